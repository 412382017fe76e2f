set terminal svg size 760,440 dynamic enhanced font "sans,12" background "white"
set output "2026-11-22-vm-versions-throughput.svg"
set title "GET /_matrix/client/versions, wrk -t2 -d4s (median of 6 at -c100, 2 elsewhere)" noenhanced
set xlabel "connections"
set ylabel "requests/s"
set logscale x
set xtics (10, 50, 100, 200)
set xrange [8:250]
set yrange [0:*]
set grid
set key top left
set format y '%.0s%c'
$d0 << EOD
9.85 80204.5 74295.8 86113.2
49.25 128356 116421 140292
98.5 137561 117034 143042
197 131604 120590 142617
EOD
$d1 << EOD
10.15 78981.3 74933.5 83029.2
50.75 122318 110402 134234
101.5 135729 116897 144883
203 132735 120791 144679
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

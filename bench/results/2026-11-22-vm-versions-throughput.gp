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
9.85 86624.7 81294.6 91954.9
49.25 104836 95933.9 113738
98.5 110525 85168.2 113813
197 108284 99311.4 117256
EOD
$d1 << EOD
10.15 90953.9 77836.9 104071
50.75 119558 114409 124707
101.5 110822 90975.4 117130
203 111845 104531 119159
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

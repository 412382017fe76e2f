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
9.85 89642.1 83789.6 95494.6
49.25 104884 96622 113146
98.5 116876 105360 123683
197 109635 98416.9 120853
EOD
$d1 << EOD
10.15 106808 100966 112651
50.75 118318 113265 123371
101.5 117280 106597 126359
203 113976 101203 126749
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

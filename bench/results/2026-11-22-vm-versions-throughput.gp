set terminal svg size 760,440 dynamic enhanced font "sans,12" background "white"
set output "2026-11-22-vm-versions-throughput.svg"
set title "GET /_matrix/client/versions, wrk -t2 -d4s (median of 6)" noenhanced
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
9.85 85344 46336.7 107687
49.25 120501 95527.2 133605
98.5 103885 90533.8 127018
197 114320 42057.2 135895
EOD
$d1 << EOD
10.15 81960.9 44307.4 108460
50.75 117461 79462.4 127107
101.5 115263 70419 131993
203 109771 82094.6 132921
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

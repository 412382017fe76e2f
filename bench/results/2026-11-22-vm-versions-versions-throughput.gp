set terminal svg size 760,440 dynamic enhanced font "sans,12" background "white"
set output "2026-11-22-vm-versions-versions-throughput.svg"
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
9.85 94375.2 79478.2 109272
49.25 95505.1 82119.6 108891
98.5 108287 79168.7 117836
197 104829 103160 106498
EOD
$d1 << EOD
10.15 92810.8 86907.2 98714.4
50.75 101620 94930.7 108309
101.5 115432 91251 116575
203 105128 104347 105910
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

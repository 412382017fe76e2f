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
9.85 37449.4 24263.9 44506.1
49.25 29298.5 28168.4 33000.8
98.5 32178.9 29998.6 46238.6
197 31162.7 30572 38351.4
EOD
$d1 << EOD
10.15 36669 24471.8 39551.8
50.75 30131.2 28298 42456.6
101.5 32280.6 30553.7 34321.4
203 30540.6 26344 36496.5
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

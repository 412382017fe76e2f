set terminal svg size 760,440 dynamic enhanced font "sans,12" background "white"
set output "2026-11-22-vm-versions-p99.svg"
set title "p99 latency, same runs" noenhanced
set xlabel "connections"
set ylabel "p99 latency (ms)"
set logscale x
set xtics (10, 50, 100, 200)
set xrange [8:250]
set yrange [0:*]
set grid
set key top left
set format y '%g'
$d0 << EOD
9.85 4.801 3.565 6.037
49.25 6.9565 6.031 7.882
98.5 7.299 4.909 9.237
197 8.0475 7.868 8.227
EOD
$d1 << EOD
10.15 3.4875 3.281 3.694
50.75 6.884 6.376 7.392
101.5 6.275 4.998 10.566
203 7.9965 7.907 8.086
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

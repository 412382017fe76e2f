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
9.85 3.3665 2.974 3.759
49.25 6.68 6.67 6.69
98.5 6.658 5.993 7.179
197 8.298 6.028 10.568
EOD
$d1 << EOD
10.15 3.0705 2.925 3.216
50.75 13.876 6.748 21.004
101.5 6.023 5.511 7.487
203 6.3695 6.31 6.429
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

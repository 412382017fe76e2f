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
9.85 1.632 1.617 1.647
49.25 7.7895 7.605 7.974
98.5 7.737 6.261 7.886
197 7.9645 7.851 8.078
EOD
$d1 << EOD
10.15 1.326 0.796 1.856
50.75 9.027 7.551 10.503
101.5 6.8245 6.329 7.826
203 7.516 7.329 7.703
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

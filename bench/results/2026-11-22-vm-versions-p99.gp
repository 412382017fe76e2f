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
9.85 1.6185 1.201 2.036
49.25 7.3415 6.808 7.875
98.5 7.2825 6.109 7.906
197 8.6945 8.505 8.884
EOD
$d1 << EOD
10.15 2.5815 2.298 2.865
50.75 5.707 4.95 6.464
101.5 6.9255 6.39 8.29
203 8.2685 7.931 8.606
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

set terminal svg size 760,440 dynamic enhanced font "sans,12" background "white"
set output "2026-11-22-vm-versions-versions-p99.svg"
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
9.85 4.0835 3.956 4.211
49.25 7.0855 6.465 7.706
98.5 7.2595 6.687 7.92
197 7.931 7.915 7.947
EOD
$d1 << EOD
10.15 3.566 2.981 4.151
50.75 6.5075 5.636 7.379
101.5 6.942 5.02 7.801
203 7.857 7.742 7.972
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

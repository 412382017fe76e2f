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
9.85 3.437 0.657 12.825
49.25 7.7285 6.751 7.994
98.5 7.908 5.88 25.722
197 9.995 8.093 26.351
EOD
$d1 << EOD
10.15 3.456 3.045 9.443
50.75 7.763 6.143 15.342
101.5 7.842 5.987 21.314
203 8.638 7.727 12.987
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

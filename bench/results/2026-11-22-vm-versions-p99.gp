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
9.85 2.6655 1.458 3.873
49.25 6.579 6.041 7.117
98.5 7.696 6.006 8.542
197 6.435 6.423 6.447
EOD
$d1 << EOD
10.15 3.725 2.541 4.909
50.75 5.242 3.941 6.543
101.5 7.5985 5.336 22.954
203 13.166 7.509 18.823
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

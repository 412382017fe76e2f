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
9.85 2.677 2.428 2.926
49.25 7.89 7.838 7.942
98.5 7.334 6.859 8.154
197 7.8665 7.698 8.035
EOD
$d1 << EOD
10.15 2.1775 1.032 3.323
50.75 12.452 8.043 16.861
101.5 6.997 6.155 11.164
203 7.6245 7.532 7.717
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

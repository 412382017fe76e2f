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
9.85 3.6255 3.387 3.864
49.25 7.3255 6.99 7.661
98.5 7.6975 6.41 10.102
197 7.5225 7.244 7.801
EOD
$d1 << EOD
10.15 3.314 2.52 4.108
50.75 6.7325 6.393 7.072
101.5 6.532 4.966 9.239
203 7.1475 6.717 7.578
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

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
9.85 3.5975 3.509 3.686
49.25 5.729 4.003 7.455
98.5 6.9335 6.226 7.816
197 7.1685 6.478 7.859
EOD
$d1 << EOD
10.15 3.799 3.544 4.054
50.75 4.361 4.311 4.411
101.5 6.8795 4.91 7.908
203 7.8275 7.805 7.85
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

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
9.85 9.511 8.386 10.094
49.25 17.241 14.02 17.853
98.5 17.642 15.913 21.861
197 20.772 10.724 25.889
EOD
$d1 << EOD
10.15 7.969 7.661 8.092
50.75 12.029 11.674 29.054
101.5 17.616 13.729 23.775
203 19.15 17.054 23.815
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

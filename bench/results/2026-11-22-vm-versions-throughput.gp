set terminal svg size 760,440 dynamic enhanced font "sans,12" background "white"
set output "2026-11-22-vm-versions-throughput.svg"
set title "GET /_matrix/client/versions, wrk -t2 -d4s (median of 6 at -c100, 2 elsewhere)" noenhanced
set xlabel "connections"
set ylabel "requests/s"
set logscale x
set xtics (10, 50, 100, 200)
set xrange [8:250]
set yrange [0:*]
set grid
set key top left
set format y '%.0s%c'
$d0 << EOD
9.85 81689 76575.1 86802.8
49.25 120332 112597 128068
98.5 111364 107330 132975
197 118082 116630 119534
EOD
$d1 << EOD
10.15 97471.7 96743.9 98199.5
50.75 113041 107695 118387
101.5 111703 90198.8 121664
203 116874 105679 128069
EOD
plot $d0 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "axon (median, min-max)", $d1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "nginx (median, min-max)"

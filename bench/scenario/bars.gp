# Throughput and slot utilisation per design, from one real run (the median run of each design).
# Called by bench_scenario --plot with: dir, expected (analytic batch-then-wait utilisation, %), subtitle.
# Input: dir/data/bars.csv with design, throughput_rps, utilisation_percent.
if (!exists("dir")) dir = "."
if (!exists("expected")) expected = 85.71
if (!exists("subtitle")) subtitle = ""

set terminal pngcairo size 1100,460 font "DejaVu Sans,10"
set output dir."/bars.png"
set datafile separator ","
set multiplot layout 1,2 title "Same request stream, same thread count\n{/*0.85 ".subtitle."}"
set style fill solid 0.85 border rgb "#333333"
set boxwidth 0.6
unset key
set grid ytics lc rgb "#dddddd"
set xtics noenhanced
set yrange [0:*]

stats dir."/data/bars.csv" using 2 nooutput
set yrange [0:STATS_max * 1.12]
set title "throughput (requests/s, higher is better)"
plot dir."/data/bars.csv" using 0:2:xtic(1) with boxes lc rgb "#4e79a7", \
     "" using 0:2:(sprintf("%.0f", $2)) with labels offset 0,0.8

set title "slot utilisation (%): busy slot-time / (slots x makespan)"
set yrange [0:122]
set arrow 1 from graph 0, first expected to graph 1, first expected nohead dt 2 lc rgb "#c0392b"
set label 1 sprintf("- - -  analytic batch-then-wait utilisation: %.1f", expected)." %" at graph 0.02, graph 0.95 left front tc rgb "#c0392b"
plot dir."/data/bars.csv" using 0:3:xtic(1) with boxes lc rgb "#59a14f", \
     "" using 0:3:(sprintf("%.1f", $3)) with labels offset 0,0.8
unset multiplot

# Gantt chart of the fleet's fault run (issue 11): batch-then-wait (top) and server_pool (bottom),
# each slot a row, each attempt a bar (coloured by server; red = a failed attempt). Server 2 is
# killed at the first dashed line and restarted on the same port at the second; the grey band is
# where server_pool had it ejected. Called by bench_fleet --plot with: dir, slots (S*K), k, fault_server.
# Input: dir/data/fleet_gantt_<design>.csv (row, start_ms, end_ms, server, ok), fleet_events_<design>.csv
# (fault_ms, heal_ms, makespan_ms) and fleet_ejected.csv (start_ms, end_ms).
if (!exists("dir")) dir = "."
if (!exists("slots")) slots = 10
if (!exists("k")) k = 2
if (!exists("fault_server")) fault_server = 2

# Read the runs' fault, heal and end times first (stats obeys the ranges set below).
set datafile separator ","
stats dir."/data/fleet_events_batch_then_wait.csv" using 1 nooutput
b_fault = STATS_min
stats dir."/data/fleet_events_batch_then_wait.csv" using 2 nooutput
b_heal = STATS_min
stats dir."/data/fleet_events_batch_then_wait.csv" using 3 nooutput
b_end = STATS_max
stats dir."/data/fleet_events_server_pool.csv" using 1 nooutput
p_fault = STATS_min
stats dir."/data/fleet_events_server_pool.csv" using 2 nooutput
p_heal = STATS_min
stats dir."/data/fleet_events_server_pool.csv" using 3 nooutput
p_end = STATS_max

set terminal pngcairo size 1400,800 font "DejaVu Sans,10"
set output dir."/fleet_gantt.png"
set datafile separator ","
set yrange [-0.6:slots-0.4]
set ytics 1
set format y ""
do for [i=0:slots-1] { set ytics add (sprintf("%d.%d", i/k, i%k) i) }
set ylabel "slot (server.slot)"
set grid xtics lc rgb "#dddddd"
unset key
set style fill solid 0.85 noborder
colour(server, ok) = ok < 0.5 ? 0xd62728 : (int(server) % 5 == 0 ? 0x4e79a7 : int(server) % 5 == 1 ? 0xf28e2b : int(server) % 5 == 2 ? 0x59a14f : int(server) % 5 == 3 ? 0xb07aa1 : 0x76b7b2)
lo = fault_server * k - 0.5
hi = fault_server * k + k - 0.5

set multiplot layout 2,1 title "Fleet fault run: server ".fault_server." killed (SIGKILL), then restarted on the same port; red = failed attempt"

fault_ms = b_fault; heal_ms = b_heal
set xrange [0:b_end]
set arrow 1 from fault_ms, graph 0 to fault_ms, graph 1 nohead dt 2 lw 2 lc rgb "#000000" front
set arrow 2 from heal_ms, graph 0 to heal_ms, graph 1 nohead dt 2 lw 2 lc rgb "#000000" front
set label 1 "kill" at fault_ms, graph 1.03 center front
set label 2 "restart" at heal_ms, graph 1.03 center front
set title "batch-then-wait: no ejection; its natural retry resubmits every failed request" offset 0,0.6
set xlabel ""
plot dir."/data/fleet_gantt_batch_then_wait.csv" using (($2+$3)/2):1:2:3:($1-0.38):($1+0.38):(colour($4,$5)) with boxxyerror lc rgb variable

fault_ms = p_fault; heal_ms = p_heal
set xrange [0:p_end]
set arrow 1 from fault_ms, graph 0 to fault_ms, graph 1 nohead dt 2 lw 2 lc rgb "#000000" front
set arrow 2 from heal_ms, graph 0 to heal_ms, graph 1 nohead dt 2 lw 2 lc rgb "#000000" front
set label 1 "kill" at fault_ms, graph 1.03 center front
set label 2 "restart" at heal_ms, graph 1.03 center front
set title "server\\_pool: server ".fault_server." ejected (grey), probed after each ejection period, serving again after the first successful probe" offset 0,0.6
set xlabel "time since the first submit (ms)"
plot dir."/data/fleet_ejected.csv" using (($1+$2)/2):((lo+hi)/2):1:2:(lo):(hi) with boxxyerror fs solid 0.35 lc rgb "#888888", \
     dir."/data/fleet_gantt_server_pool.csv" using (($2+$3)/2):1:2:3:($1-0.38):($1+0.38):(colour($4,$5)) with boxxyerror lc rgb variable
unset multiplot

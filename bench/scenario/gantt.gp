# Gantt chart of the slots: batch-then-wait (top) and server_pool (bottom), from one real run.
# Called by bench_scenario --plot with: dir (CSV and PNG folder), slots (S*K), k (slots per server),
# subtitle.
# Input: dir/data/gantt_<design>.csv with row (= server*K + slot), start_ms, end_ms, server, slot, id, batch.
# Shows the first 40 ms, where each request is still a readable bar; white is an idle slot.
if (!exists("dir")) dir = "."
if (!exists("slots")) slots = 10
if (!exists("k")) k = 2
if (!exists("subtitle")) subtitle = ""
if (!exists("window")) window = 40.0

set terminal pngcairo size 1200,720 font "DejaVu Sans,10"
set output dir."/gantt.png"
set datafile separator ","
set multiplot layout 2,1 title "Slots over time (first ".sprintf("%.0f", window)." ms): each bar is one request, white is an idle slot\n{/*0.85 ".subtitle."}"
set xrange [0:window]
set yrange [-0.6:slots-0.4]
set ytics 1
set ylabel "slot (server.slot)"
set grid xtics lc rgb "#dddddd"
unset key
set style fill solid 0.85 border rgb "#333333"
set format y ""
do for [i=0:slots-1] { set ytics add (sprintf("%d.%d", i/k, i%k) i) }

# Colour by server so a server's K slots read as one group.
colour(server) = (int(server) % 5 == 0 ? 0x4e79a7 : int(server) % 5 == 1 ? 0xf28e2b : int(server) % 5 == 2 ? 0x59a14f : int(server) % 5 == 3 ? 0xb07aa1 : 0x76b7b2)

set title "batch-then-wait: a server takes K requests, waits for the slowest, then takes the next K"
set xlabel ""
plot dir."/data/gantt_batch_then_wait.csv" using (($2+$3)/2):1:2:3:($1-0.38):($1+0.38):(colour($4)) with boxxyerror lc rgb variable

set title "server_pool: a slot that finishes takes the next request at once" noenhanced
set xlabel "time since the first submit (ms)"
plot dir."/data/gantt_server_pool.csv" using (($2+$3)/2):1:2:3:($1-0.38):($1+0.38):(colour($4)) with boxxyerror lc rgb variable
unset multiplot

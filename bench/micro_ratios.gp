# Bar chart of flowpool's time as a fraction of oneTBB's, per workload, beside each target.
# Called by bench/run_micro -p DIR with: datafile (label<TAB>ratio<TAB>target), outfile, subtitle.
set terminal pngcairo size 900,420 font "sans,10"
set output outfile
set title "flowpool / oneTBB (lower is better; same run)\n{/*0.8 ".subtitle."}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:1.4]
set ylabel "time ratio flowpool / oneTBB"
set grid ytics
set key top left opaque
set xtics noenhanced rotate by -15 font ",9"
set bmargin 5
set datafile separator "\t"
plot datafile using 2:xtic(1) title "measured ratio" linecolor rgb "#3465a4", \
     '' using 3 title "target (at most)" linecolor rgb "#cc0000", \
     1 with lines dashtype 2 linecolor rgb "#555555" title "parity with oneTBB"

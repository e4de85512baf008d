// Package bench is xdpipe's benchmark harness: it builds a veth testbed
// (two network namespaces, addresses from 198.18.0.0/15), and runs a
// matrix of receivers x frame sizes against the same generator (package
// gen's live engine, and its xsk engine for frames above a page), one cell
// after another.
//
// Each receiver runs as a child process pinned to its own CPU, so its CPU
// time is its own (read from /proc/PID/task/*/schedstat between the start
// and the end of the traffic). The kernel's share of receiving on a veth
// runs in softirq on the generator's CPU and is reported apart (machine
// wide softirq time from /proc/stat). Per cell: frames/s, Gbit/s, receiver
// CPU seconds per million frames, ratio to the in-kernel XDP_DROP ceiling.
//
// The machine may be shared: the CPU time of every other user process is
// read before and after each cell; a cell in which others used more than a
// share of a CPU is marked disturbed and run again. Config.Repeat runs the
// matrix in several rounds, each in a rotated cell order, and folds them
// into each cell's and each ratio's median, minimum and maximum.
//
// Output: Report.WriteTable, WriteJSON, WriteMarkdown; the chart is drawn
// by cmd/xdpipe-chart, a module of its own, so that xdpipe's module does
// not depend on gonum/plot.
package bench

package pipeline

import "time"

// epoch is the origin of pipeline time: Packet.Time and Burst.Time are
// nanoseconds since epoch on the monotonic clock.
var epoch = time.Now()

// Now returns pipeline time: monotonic nanoseconds since process start. It
// does not allocate; the worker calls it once per pass.
func Now() int64 { return int64(time.Since(epoch)) }

// WallTime converts pipeline time to wall-clock time (for pcap timestamps).
func WallTime(t int64) time.Time { return epoch.Add(time.Duration(t)) }

package artifact

import "time"

// NextSequence returns the sequence an issuer should give the next artifact
// of an application for a device, after last: the larger of last+1 and the
// Unix time of now in milliseconds. The time term keeps sequences increasing
// across issuer restarts and a lost last value, as long as the issuer's clock
// does not go back; the last+1 term keeps them increasing when it does, or
// when several artifacts are issued within a millisecond.
func NextSequence(last uint64, now time.Time) uint64 {
	next := last + 1
	if ms := now.UnixMilli(); ms > 0 && uint64(ms) > next {
		next = uint64(ms)
	}
	return next
}

package flash

import (
	"fmt"
	"strings"
)

// dump renders the log for debugging failed tests.
func dump(c Chip) string {
	g := c.Geometry()
	var sb strings.Builder
	blk := make([]byte, g.BlockSize)
	s := &Store{geo: g}
	for b := range g.Blocks {
		_, _ = c.ReadAt(blk, int64(b*g.BlockSize))
		seq, ok := decodeBlockHdr(blk)
		if !ok {
			if !allFF(blk[:blockHdrSize]) {
				fmt.Fprintf(&sb, "block %d: invalid header\n", b)
			}
			continue
		}
		fmt.Fprintf(&sb, "block %d seq %d:\n", b, seq)
		end, clean := s.scan(b, blk, false, func(addr uint32, h recHdr, key, _ []byte, ok bool) {
			fmt.Fprintf(&sb, "  @%d %c key=%s txn=%d ver=%d a=%d b=%d n=%d ok=%v\n", addr, h.kind, key, h.txn, h.ver, h.a, h.b, h.dataLen, ok)
		})
		fmt.Fprintf(&sb, "  end %d clean %v\n", end, clean)
	}
	return sb.String()
}

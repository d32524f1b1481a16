package flash

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// Errors returned by Store. Callers branch on them with errors.Is.
var (
	// ErrNotFound reports a key that is not in the store.
	ErrNotFound = errors.New("flash: key not found")
	// ErrNoSpace reports a commit that does not fit even after compaction;
	// nothing was written.
	ErrNoSpace = errors.New("flash: no space")
	// ErrTooLarge reports a key or value over the store's limits.
	ErrTooLarge = errors.New("flash: key or value too large")
	// ErrCorrupt reports data whose CRC does not match. Mount skips such
	// records and counts them; Get returns it for a value damaged since.
	ErrCorrupt = errors.New("flash: corrupt data")
	// ErrFailed reports that an earlier write failed (for instance a power
	// cut) and the store must be mounted again before it accepts writes.
	ErrFailed = errors.New("flash: store failed, remount required")
)

// CorruptError describes a damaged record or block found on flash.
type CorruptError struct {
	Block  int    // erase block
	Offset int    // offset within the block
	Reason string // what failed to check
}

// Error describes where the damage is.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("flash: corrupt %s at block %d offset %d", e.Reason, e.Block, e.Offset)
}

// Is makes errors.Is(err, ErrCorrupt) true for a *CorruptError.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// DefaultMaxValue is the default largest value a Store accepts.
const DefaultMaxValue = 1 << 20

// reserveBlocks is the number of free blocks a commit leaves. A compaction
// needs at most one (see fit), so the log can always be compacted, even
// after a power cut sealed a partly written block.
const reserveBlocks = 2

// maxCorruptions bounds the CorruptErrors a store remembers.
const maxCorruptions = 8

// Options configure a Store.
type Options struct {
	// MaxValue is the largest value accepted, DefaultMaxValue if zero.
	MaxValue int
	// Logger receives mount findings (corruption, discarded transactions);
	// nil discards them.
	Logger *slog.Logger
}

// Stats are a store's counters.
type Stats struct {
	Capacity    int64 // bytes of flash
	Blocks      int   // erase blocks
	FreeBlocks  int   // blocks holding no live log
	LiveBytes   int64 // bytes of live records, overhead included
	Keys        int   // keys stored
	Commits     int64 // transactions committed since mount
	Compactions int64 // blocks compacted since mount

	// Found at mount.
	CorruptRecords int // records whose CRC failed, other than a torn last write
	TornRecords    int // 0 or 1: the last write was cut by a power loss
	DroppedTxns    int // transactions discarded: uncommitted or damaged
	InvalidBlocks  int // blocks whose header was neither valid nor erased
}

// Store is a crash-consistent, log-structured key/value store on a Chip.
// It is safe for concurrent use.
type Store struct {
	mu       sync.Mutex
	chip     Chip
	geo      Geometry
	maxValue int
	log      *slog.Logger

	// live maps the blocks of the live log to their sequence numbers;
	// every other block is free. A map keeps an idle device's cost
	// independent of the partition size.
	live    map[int32]uint32
	head    int // block being appended to, -1 if none
	pos     int // append offset within head; BlockSize when sealed
	nextSeq uint32
	tail    uint32 // blocks with a lower sequence number are dead
	nextTxn uint64

	index     map[string]*entry
	liveBytes int64
	failed    error

	stats    Stats
	corrupts []CorruptError
	lastBad  badRecord // the last damaged record seen by mount
}

// badRecord locates a damaged record: block, offset, and where parsing
// resumed after it.
type badRecord struct{ block, off, next int }

type entry struct {
	ver   uint64
	size  uint32
	frags []frag // sorted by off, tiling [0, size)
}

type frag struct {
	addr uint32 // record address
	off  uint32 // offset of the fragment in the value
	n    uint16
}

func (e *entry) bytes(keyLen int) int64 {
	return int64(len(e.frags))*int64(recOverhead+keyLen) + int64(e.size)
}

// Mount scans chip and returns a store holding exactly the committed
// transactions found on it. Damaged records and transactions are skipped
// and counted in Stats; Mount fails only when the chip cannot be read.
func Mount(chip Chip, opts Options) (*Store, error) {
	g := chip.Geometry()
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("mount: %w", err)
	}
	s := &Store{
		chip:     chip,
		geo:      g,
		maxValue: opts.MaxValue,
		log:      opts.Logger,
		live:     make(map[int32]uint32),
		head:     -1,
		pos:      g.BlockSize,
		index:    make(map[string]*entry),
	}
	if s.maxValue <= 0 {
		s.maxValue = DefaultMaxValue
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.mount(); err != nil {
		return nil, fmt.Errorf("mount: %w", err)
	}
	return s, nil
}

var blockPool sync.Pool

func getBuf(n int) *[]byte {
	if p, ok := blockPool.Get().(*[]byte); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n)
	return &b
}

func putBuf(p *[]byte) { blockPool.Put(p) }

type located struct {
	idx int
	seq uint32
}

type pending struct {
	addr uint32
	h    recHdr
	key  string
}

// mount rebuilds the store's state from the chip, in phases: find the
// blocks with a valid header, find the log tail named by the newest
// commit, replay the live log, then check what the replay left.
func (s *Store) mount() error {
	bp := getBuf(s.geo.BlockSize)
	defer putBuf(bp)
	blk := *bp

	valid, maxSeq, err := s.findBlocks(blk)
	if err != nil {
		return err
	}
	tail, err := s.findTail(valid, blk)
	if err != nil {
		return err
	}
	rp := &replayer{s: s, first: true}
	end, clean, err := rp.replay(valid, tail, blk)
	if err != nil {
		return err
	}
	if s.head >= 0 && clean {
		s.pos = end
	}
	s.settleTornWrite(end)
	s.tail = tail
	// A damaged commit could name a tail beyond every block; new blocks
	// must still land at or above it, or the next mount would drop them.
	s.nextSeq = max(maxSeq+1, tail)
	s.nextTxn = rp.maxTxn + 1
	s.checkValues()
	if s.stats.CorruptRecords > 0 || s.stats.TornRecords > 0 || s.stats.DroppedTxns > 0 || s.stats.InvalidBlocks > 0 {
		s.log.Warn("flash mount recovered", "corruptRecords", s.stats.CorruptRecords, "tornRecords", s.stats.TornRecords,
			"droppedTxns", s.stats.DroppedTxns, "invalidBlocks", s.stats.InvalidBlocks)
	}
	return nil
}

// findBlocks reads every block header and returns the blocks with a valid
// one, in log order, and the highest sequence number.
func (s *Store) findBlocks(blk []byte) ([]located, uint32, error) {
	bs := s.geo.BlockSize
	var valid []located
	var maxSeq uint32
	for b := range s.geo.Blocks {
		hdr := blk[:blockHdrSize]
		if _, err := s.chip.ReadAt(hdr, int64(b)*int64(bs)); err != nil {
			return nil, 0, err
		}
		if seq, ok := decodeBlockHdr(hdr); ok {
			valid = append(valid, located{b, seq})
			maxSeq = max(maxSeq, seq)
		} else if !allFF(hdr) {
			s.stats.InvalidBlocks++
		}
	}
	slices.SortFunc(valid, func(a, b located) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.idx, b.idx))
	})
	return valid, maxSeq, nil
}

// findTail returns the log tail the newest commit record names (0 if
// none): blocks below it hold no live data.
func (s *Store) findTail(valid []located, blk []byte) (uint32, error) {
	for i := len(valid) - 1; i >= 0; i-- {
		if err := s.readBlock(valid[i].idx, blk); err != nil {
			return 0, err
		}
		var tail uint32
		found := false
		s.scan(valid[i].idx, blk, false, func(_ uint32, h recHdr, _, _ []byte, ok bool) {
			if ok && h.kind == kindCommit {
				tail, found = h.b, true
			}
		})
		if found {
			return tail, nil
		}
	}
	return 0, nil
}

// replayer applies the committed transactions of the live log, in order,
// to a store's index.
type replayer struct {
	s       *Store
	pend    []pending
	pendTxn uint64
	broken  bool
	maxTxn  uint64
	// partial marks the transaction open at the start of the live log: its
	// first records may lie in blocks below the tail, whose live fragments
	// compaction has already rewritten.
	partial bool
	first   bool
}

// replay scans the blocks of the live log (sequence at or above tail) and
// returns where the last one's records end and whether the rest of it is
// erased.
func (rp *replayer) replay(valid []located, tail uint32, blk []byte) (end int, clean bool, err error) {
	s := rp.s
	end = s.geo.BlockSize
	for _, v := range valid {
		if v.seq < tail {
			continue
		}
		if err := s.readBlock(v.idx, blk); err != nil {
			return 0, false, err
		}
		s.live[int32(v.idx)] = v.seq //nolint:gosec // a block index: the chip is below 4 GiB (Geometry.Validate)
		s.head = v.idx
		end, clean = s.scan(v.idx, blk, true, rp.record)
		rp.first = false
	}
	rp.drop()
	return end, clean, nil
}

// drop discards the open transaction, counting it if it held anything.
func (rp *replayer) drop() {
	if len(rp.pend) > 0 || rp.broken {
		rp.s.stats.DroppedTxns++
	}
	rp.pend, rp.broken, rp.pendTxn, rp.partial = rp.pend[:0], false, 0, false
}

// record handles one record of the log: it opens a transaction, collects
// its records, and applies them at its commit record if the transaction
// is whole.
func (rp *replayer) record(addr uint32, h recHdr, key, _ []byte, ok bool) {
	rp.maxTxn = max(rp.maxTxn, h.txn)
	if h.txn != rp.pendTxn {
		rp.drop()
		rp.pendTxn = h.txn
		rp.partial = rp.first
	}
	rp.first = false
	if !ok {
		rp.broken = true
		return
	}
	if h.kind != kindCommit {
		rp.pend = append(rp.pend, pending{addr: addr, h: h, key: string(key)})
		return
	}
	if rp.broken || int(h.a) < len(rp.pend) || (!rp.partial && int(h.a) != len(rp.pend)) {
		rp.drop()
		return
	}
	for _, p := range rp.pend {
		if p.h.kind == kindDelete {
			delete(rp.s.index, p.key)
			continue
		}
		rp.s.applyFrag(p.key, p.h.ver, p.h.a, frag{addr: p.addr, off: p.h.b, n: p.h.dataLen})
	}
	rp.pend, rp.pendTxn, rp.partial = rp.pend[:0], 0, false
}

// settleTornWrite counts a damaged record at the very end of the log as
// the write a power loss interrupted, not as corruption.
func (s *Store) settleTornWrite(end int) {
	if s.stats.CorruptRecords == 0 || s.lastBad.block != s.head || s.lastBad.next != end {
		return
	}
	s.stats.CorruptRecords--
	s.stats.TornRecords++
	if n := len(s.corrupts); n > 0 && s.corrupts[n-1].Block == s.head && s.corrupts[n-1].Offset == s.lastBad.off {
		s.corrupts = s.corrupts[:n-1]
	}
}

// checkValues drops every value with a hole (a damaged log) and sums the
// live bytes of the others.
func (s *Store) checkValues() {
	bs := s.geo.BlockSize
	for key, e := range s.index {
		var next uint32
		for _, f := range e.frags {
			if f.off != next {
				break
			}
			next += uint32(f.n)
		}
		if next != e.size {
			delete(s.index, key)
			s.noteCorrupt(int(e.frags[0].addr)/bs, int(e.frags[0].addr)%bs, "incomplete value "+key)
			continue
		}
		s.liveBytes += e.bytes(len(key))
	}
}

func (s *Store) readBlock(b int, blk []byte) error {
	_, err := s.chip.ReadAt(blk, int64(b)*int64(s.geo.BlockSize))
	return err
}

// scan parses the records of block b, whose contents are blk, calling fn for
// every record with a valid header. It returns where parsing stopped and
// whether everything from there to the end of the block is erased.
func (s *Store) scan(b int, blk []byte, report bool, fn func(addr uint32, h recHdr, key, data []byte, ok bool)) (end int, clean bool) {
	bs := len(blk)
	pos := blockHdrSize
	for pos+recHdrSize <= bs {
		if allFF(blk[pos : pos+recHdrSize]) {
			break
		}
		h, ok := decodeHdr(blk[pos:])
		if !ok || pos+h.size() > bs {
			if report {
				s.noteCorrupt(b, pos, "record header")
				s.lastBad = badRecord{b, pos, pos}
			}
			return pos, false
		}
		k := blk[pos+recHdrSize : pos+recHdrSize+int(h.keyLen)]
		d := blk[pos+recHdrSize+int(h.keyLen) : pos+h.size()-4]
		good := bodyCRC(k, d) == binary.LittleEndian.Uint32(blk[pos+h.size()-4:])
		if !good && report {
			s.noteCorrupt(b, pos, "record body")
			s.lastBad = badRecord{b, pos, pos + h.size()}
		}
		fn(uint32(b*bs+pos), h, k, d, good) //nolint:gosec // an address in a chip below 4 GiB (Geometry.Validate)
		pos += h.size()
	}
	return pos, allFF(blk[pos:])
}

func (s *Store) noteCorrupt(block, off int, reason string) {
	s.stats.CorruptRecords++
	if len(s.corrupts) < maxCorruptions {
		s.corrupts = append(s.corrupts, CorruptError{Block: block, Offset: off, Reason: reason})
	}
	s.log.Debug("flash damaged record", "block", block, "offset", off, "reason", reason)
}

// applyFrag records that fragment f of version ver of key's value lives on
// flash. A newer version replaces the entry, the same version replaces the
// fragments it overlaps (a relocation), an older one is ignored.
func (s *Store) applyFrag(key string, ver uint64, size uint32, f frag) {
	e := s.index[key]
	switch {
	case e == nil || ver > e.ver:
		e = &entry{ver: ver, size: size}
		s.index[key] = e
	case ver < e.ver || size != e.size:
		return
	}
	end := f.off + uint32(f.n)
	e.frags = slices.DeleteFunc(e.frags, func(g frag) bool {
		return g.off < end && f.off < g.off+uint32(g.n) || (g.n == 0 && g.off == f.off)
	})
	i, _ := slices.BinarySearchFunc(e.frags, f.off, func(g frag, off uint32) int { return cmp.Compare(g.off, off) })
	e.frags = slices.Insert(e.frags, i, f)
}

// Batch collects puts and deletes that Commit applies atomically. The
// latest operation on a key wins. A Batch holds references to the values
// passed to Put until it is reset.
type Batch struct {
	ops []batchOp
}

type batchOp struct {
	key   string
	value []byte
	del   bool
}

// Put sets key to value.
func (b *Batch) Put(key string, value []byte) {
	b.ops = append(b.ops, batchOp{key: key, value: value})
}

// Delete removes key.
func (b *Batch) Delete(key string) {
	b.ops = append(b.ops, batchOp{key: key, del: true})
}

// Len returns the number of operations queued.
func (b *Batch) Len() int { return len(b.ops) }

// Reset empties the batch for reuse.
func (b *Batch) Reset() {
	clear(b.ops)
	b.ops = b.ops[:0]
}

// Append adds other's operations after b's.
func (b *Batch) Append(other *Batch) {
	if other != nil {
		b.ops = append(b.ops, other.ops...)
	}
}

// Put commits a single put.
func (s *Store) Put(key string, value []byte) error {
	var b Batch
	b.Put(key, value)
	return s.Commit(&b)
}

// Delete commits a single delete; deleting a missing key is not an error.
func (s *Store) Delete(key string) error {
	var b Batch
	b.Delete(key)
	return s.Commit(&b)
}

// Commit applies b atomically: after a power cut at any point, the next
// Mount sees either all of b or none of it. It compacts the log first when
// space is short and returns ErrNoSpace, having written nothing, when b
// cannot fit.
func (s *Store) Commit(b *Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return fmt.Errorf("commit: %w: %w", ErrFailed, s.failed)
	}
	ops := make([]batchOp, 0, len(b.ops))
	for i, op := range b.ops {
		superseded := false
		for _, later := range b.ops[i+1:] {
			if later.key == op.key {
				superseded = true
				break
			}
		}
		if superseded {
			continue
		}
		if len(op.key) == 0 || len(op.key) > MaxKey {
			return fmt.Errorf("commit: key length %d outside [1, %d]: %w", len(op.key), MaxKey, ErrTooLarge)
		}
		if len(op.value) > s.maxValue {
			return fmt.Errorf("commit: value for %q is %d bytes, limit %d: %w", op.key, len(op.value), s.maxValue, ErrTooLarge)
		}
		if op.del && s.index[op.key] == nil {
			continue
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 {
		return nil
	}
	if err := s.makeRoom(ops); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if err := s.writeTxn(ops); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// usableBytes is how many live bytes the store lets accumulate: all blocks
// but the compaction reserve and the head, less the worst packing waste.
func (s *Store) usableBytes() int64 {
	perBlock := s.geo.BlockSize - blockHdrSize - (minFrag + recOverhead + MaxKey)
	return int64(s.geo.Blocks-reserveBlocks-1) * int64(perBlock)
}

func (s *Store) makeRoom(ops []batchOp) error {
	var add int64
	for _, op := range ops {
		if !op.del {
			per := s.geo.BlockSize - blockHdrSize - 2*recOverhead - len(op.key)
			frags := 1 + len(op.value)/per
			add += int64(len(op.value)) + int64(recOverhead+len(op.key))*int64(frags)
		}
	}
	if s.liveBytes+add > s.usableBytes() {
		return fmt.Errorf("%d live bytes + %d new > %d usable: %w", s.liveBytes, add, s.usableBytes(), ErrNoSpace)
	}
	for range 2 * s.geo.Blocks {
		if s.freeBlocks()-s.plan(ops) >= reserveBlocks {
			return nil
		}
		if err := s.compact(); err != nil {
			return err
		}
	}
	return fmt.Errorf("compaction made no room: %w", ErrNoSpace)
}

func (s *Store) freeBlocks() int {
	return s.geo.Blocks - len(s.live)
}

// fit decides where the next record of a key of keyLen bytes, carrying up
// to want data bytes, goes given the append offset pos: into the current
// block (fresh=false) or a fresh one, with n data bytes. Put and delete
// records end at least recOverhead bytes before the end of a block, so the
// live records of any block plus one commit record always fit in one fresh
// block; only commit records use those last bytes.
func (s *Store) fit(pos, keyLen, want int, commit bool) (fresh bool, n int) {
	end := s.geo.BlockSize
	if !commit {
		end -= recOverhead
	}
	want = min(want, maxFrag)
	room := end - pos - recOverhead - keyLen
	switch {
	case room >= want:
		return false, want
	case room >= minFrag:
		return false, room
	}
	return true, min(want, end-blockHdrSize-recOverhead-keyLen)
}

// plan returns how many fresh blocks writing ops as one transaction takes.
func (s *Store) plan(ops []batchOp) int {
	pos, fresh := s.pos, 0
	step := func(keyLen, want int) int {
		f, n := s.fit(pos, keyLen, want, keyLen == 0)
		if f {
			fresh++
			pos = blockHdrSize
		}
		pos += recOverhead + keyLen + n
		return n
	}
	for _, op := range ops {
		if op.del {
			step(len(op.key), 0)
			continue
		}
		for rem := len(op.value); ; {
			rem -= step(len(op.key), rem)
			if rem == 0 {
				break
			}
		}
	}
	step(0, 0)
	return fresh
}

func (s *Store) writeTxn(ops []batchOp) error {
	txn := s.nextTxn
	s.nextTxn++
	type placed struct {
		key   string
		del   bool
		size  uint32
		frags []frag
	}
	done := make([]placed, 0, len(ops))
	count := uint32(0)
	for _, op := range ops {
		if op.del {
			if _, err := s.writeRecord(recHdr{kind: kindDelete, keyLen: uint8(len(op.key)), txn: txn}, op.key, nil); err != nil { //nolint:gosec // keys are at most MaxKey (255) bytes, checked in Commit
				return err
			}
			count++
			done = append(done, placed{key: op.key, del: true})
			continue
		}
		frags, err := s.writeValue(txn, txn, op.key, uint32(len(op.value)), 0, op.value) //nolint:gosec // values are at most maxValue bytes, checked in Commit
		if err != nil {
			return err
		}
		count += uint32(len(frags))                                                         //nolint:gosec // fragments of one value: fewer than its bytes
		done = append(done, placed{key: op.key, size: uint32(len(op.value)), frags: frags}) //nolint:gosec // values are at most maxValue bytes, checked in Commit
	}
	if _, err := s.writeRecord(recHdr{kind: kindCommit, a: count, b: s.tail, txn: txn}, "", nil); err != nil {
		return err
	}
	for _, p := range done {
		if old := s.index[p.key]; old != nil {
			s.liveBytes -= old.bytes(len(p.key))
			delete(s.index, p.key)
		}
		if p.del {
			continue
		}
		e := &entry{ver: txn, size: p.size, frags: p.frags}
		s.index[p.key] = e
		s.liveBytes += e.bytes(len(p.key))
	}
	s.stats.Commits++
	return nil
}

// writeValue writes data, the bytes at offset off of version ver of key's
// value of size bytes, as put records of transaction txn, split to fit.
func (s *Store) writeValue(txn, ver uint64, key string, size, off uint32, data []byte) ([]frag, error) {
	var frags []frag
	for first := true; first || len(data) > 0; first = false {
		fresh, n := s.fit(s.pos, len(key), len(data), false)
		if fresh {
			if err := s.alloc(); err != nil {
				return nil, err
			}
		}
		h := recHdr{kind: kindPut, keyLen: uint8(len(key)), dataLen: uint16(n), a: size, b: off, txn: txn, ver: ver} //nolint:gosec // keys are at most MaxKey (255) bytes; n is at most maxFrag (0xFFFF), see fit
		addr, err := s.writeRecord(h, key, data[:n])
		if err != nil {
			return nil, err
		}
		frags = append(frags, frag{addr: addr, off: off, n: uint16(n)}) //nolint:gosec // n is at most maxFrag (0xFFFF), see fit
		off += uint32(n)                                                //nolint:gosec // n is at most maxFrag (0xFFFF), see fit
		data = data[n:]
	}
	return frags, nil
}

// writeRecord appends one record at the head. The caller has placed it
// with fit, except for key-only records that writeRecord places itself.
func (s *Store) writeRecord(h recHdr, key string, data []byte) (uint32, error) {
	if h.kind != kindPut {
		if fresh, _ := s.fit(s.pos, len(key), 0, h.kind == kindCommit); fresh {
			if err := s.alloc(); err != nil {
				return 0, err
			}
		}
	}
	size := h.size()
	bp := getBuf(size)
	defer putBuf(bp)
	rec := *bp
	h.encode(rec)
	copy(rec[recHdrSize:], key)
	copy(rec[recHdrSize+len(key):], data)
	binary.LittleEndian.PutUint32(rec[size-4:], bodyCRC(rec[recHdrSize:recHdrSize+len(key)], data))
	addr := uint32(s.head*s.geo.BlockSize + s.pos) //nolint:gosec // an address in a chip below 4 GiB (Geometry.Validate)
	if err := s.program(int64(addr), rec); err != nil {
		return 0, err
	}
	s.pos += size
	return addr, nil
}

// program writes p at off page by page. A failure leaves the store failed.
func (s *Store) program(off int64, p []byte) error {
	ps := int64(s.geo.PageSize)
	for len(p) > 0 {
		n := min(int64(len(p)), ps-off%ps)
		if err := s.chip.Program(off, p[:n]); err != nil {
			s.failed = err
			return err
		}
		off += n
		p = p[n:]
	}
	return nil
}

// alloc erases a free block and starts it as the new head.
func (s *Store) alloc() error {
	n := s.geo.Blocks
	for i := range n {
		b := (s.head + 1 + i) % n
		if s.head < 0 {
			b = i
		}
		if _, used := s.live[int32(b)]; used {
			continue
		}
		if err := s.chip.Erase(b); err != nil {
			s.failed = err
			return err
		}
		var hdr [blockHdrSize]byte
		encodeBlockHdr(hdr[:], s.nextSeq)
		if err := s.program(int64(b)*int64(s.geo.BlockSize), hdr[:]); err != nil {
			return err
		}
		s.live[int32(b)] = s.nextSeq
		s.nextSeq++
		s.head, s.pos = b, blockHdrSize
		return nil
	}
	return ErrNoSpace
}

// compact relocates the live records of the oldest block to the head and
// commits a new log tail past it, freeing the block.
func (s *Store) compact() error {
	t, tseq, ok := s.oldestBlock()
	if !ok {
		return ErrNoSpace
	}
	if t == s.head {
		s.pos = s.geo.BlockSize // seal: relocated records go to a fresh block
	}
	bp := getBuf(s.geo.BlockSize)
	defer putBuf(bp)
	blk := *bp
	if err := s.readBlock(t, blk); err != nil {
		s.failed = err
		return err
	}
	lives := s.liveRecords(t, blk)
	txn := s.nextTxn
	newTail := tseq + 1
	moves, count, err := s.relocate(txn, lives)
	if err != nil {
		return err
	}
	if _, err := s.writeRecord(recHdr{kind: kindCommit, a: count, b: newTail, txn: txn}, "", nil); err != nil {
		return err
	}
	s.applyMoves(moves)
	delete(s.live, int32(t)) //nolint:gosec // a block index: the chip is below 4 GiB (Geometry.Validate)
	s.tail = newTail
	s.stats.Compactions++
	return nil
}

// oldestBlock returns the block of the live log with the lowest sequence
// number.
func (s *Store) oldestBlock() (t int, seq uint32, ok bool) {
	t = -1
	for b, q := range s.live {
		if t < 0 || q < seq || (q == seq && int(b) < t) {
			t, seq = int(b), q
		}
	}
	return t, seq, t >= 0
}

// liveRecord is a record of a block being compacted that still holds part
// of a current value.
type liveRecord struct {
	key  string
	h    recHdr
	addr uint32
	data []byte
}

// liveRecords returns the records of block t (contents blk) that hold
// part of a current value.
func (s *Store) liveRecords(t int, blk []byte) []liveRecord {
	var lives []liveRecord
	s.scan(t, blk, false, func(addr uint32, h recHdr, key, data []byte, ok bool) {
		if !ok || h.kind != kindPut {
			return
		}
		e := s.index[string(key)]
		if e == nil || e.ver != h.ver {
			return
		}
		for _, f := range e.frags {
			if f.addr == addr {
				lives = append(lives, liveRecord{key: string(key), h: h, addr: addr, data: data})
				return
			}
		}
	})
	return lives
}

// moved is a fragment relocated by compaction: the record at old now
// lives in frags.
type moved struct {
	key   string
	old   uint32
	frags []frag
}

// relocate writes the live records in transaction txn and returns where
// they went and how many records it wrote. Records keep their size when
// they fit the head or one fresh block; only a block written by something
// else can be fuller, and its records are split.
func (s *Store) relocate(txn uint64, lives []liveRecord) ([]moved, uint32, error) {
	bs := s.geo.BlockSize
	total := recOverhead // the commit record
	for _, l := range lives {
		total += l.h.size()
	}
	if total > bs-blockHdrSize {
		return s.relocateSplit(txn, lives)
	}
	if s.head < 0 || s.pos+total > bs {
		if s.freeBlocks() < 1 {
			return nil, 0, fmt.Errorf("compaction needs a free block: %w", ErrNoSpace)
		}
		s.nextTxn++
		if err := s.alloc(); err != nil {
			return nil, 0, err
		}
	} else {
		s.nextTxn++
	}
	moves := make([]moved, 0, len(lives))
	for _, l := range lives {
		h := l.h
		h.txn = txn
		addr, err := s.writeRecord(h, l.key, l.data)
		if err != nil {
			return nil, 0, err
		}
		moves = append(moves, moved{key: l.key, old: l.addr, frags: []frag{{addr: addr, off: h.b, n: h.dataLen}}})
	}
	return moves, uint32(len(moves)), nil //nolint:gosec // moves of records of one block, fewer than its bytes
}

// relocateSplit relocates records that do not fit one block together,
// splitting them as new values are.
func (s *Store) relocateSplit(txn uint64, lives []liveRecord) ([]moved, uint32, error) {
	ops := make([]batchOp, len(lives))
	for i, l := range lives {
		ops[i] = batchOp{key: l.key, value: l.data}
	}
	if need := s.plan(ops); need > s.freeBlocks() {
		return nil, 0, fmt.Errorf("compaction needs %d blocks, %d free: %w", need, s.freeBlocks(), ErrNoSpace)
	}
	s.nextTxn++
	moves := make([]moved, 0, len(lives))
	count := uint32(0)
	for _, l := range lives {
		frags, err := s.writeValue(txn, l.h.ver, l.key, l.h.a, l.h.b, l.data)
		if err != nil {
			return nil, 0, err
		}
		count += uint32(len(frags)) //nolint:gosec // fragments of one value: fewer than its bytes
		moves = append(moves, moved{key: l.key, old: l.addr, frags: frags})
	}
	return moves, count, nil
}

// applyMoves points the index at the relocated fragments.
func (s *Store) applyMoves(moves []moved) {
	for _, m := range moves {
		e := s.index[m.key]
		s.liveBytes -= e.bytes(len(m.key))
		i := slices.IndexFunc(e.frags, func(f frag) bool { return f.addr == m.old })
		e.frags = slices.Replace(e.frags, i, i+1, m.frags...)
		s.liveBytes += e.bytes(len(m.key))
	}
}

// Get returns a copy of key's value.
func (s *Store) Get(key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.index[key]
	if e == nil {
		return nil, fmt.Errorf("get %q: %w", key, ErrNotFound)
	}
	out := make([]byte, e.size)
	for _, f := range e.frags {
		if err := s.readFrag(key, f, out[f.off:f.off+uint32(f.n)]); err != nil {
			return nil, fmt.Errorf("get %q: %w", key, err)
		}
	}
	return out, nil
}

func (s *Store) readFrag(key string, f frag, dst []byte) error {
	var hdr [recHdrSize + MaxKey + 4]byte
	klen := len(key)
	if _, err := s.chip.ReadAt(hdr[:recHdrSize+klen], int64(f.addr)); err != nil {
		return err
	}
	bs := s.geo.BlockSize
	h, ok := decodeHdr(hdr[:])
	if !ok || h.kind != kindPut || int(h.keyLen) != klen || h.dataLen != f.n || string(hdr[recHdrSize:recHdrSize+klen]) != key {
		return &CorruptError{Block: int(f.addr) / bs, Offset: int(f.addr) % bs, Reason: "record header"}
	}
	if _, err := s.chip.ReadAt(dst, int64(f.addr)+int64(recHdrSize+klen)); err != nil {
		return err
	}
	crc := hdr[recHdrSize+klen : recHdrSize+klen+4]
	if _, err := s.chip.ReadAt(crc, int64(f.addr)+int64(recHdrSize+klen+len(dst))); err != nil {
		return err
	}
	if bodyCRC(hdr[recHdrSize:recHdrSize+klen], dst) != binary.LittleEndian.Uint32(crc) {
		return &CorruptError{Block: int(f.addr) / bs, Offset: int(f.addr) % bs, Reason: "record body"}
	}
	return nil
}

// Has reports whether key is stored.
func (s *Store) Has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index[key] != nil
}

// Size returns the length of key's value and whether it exists.
func (s *Store) Size(key string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.index[key]; e != nil {
		return int(e.size), true
	}
	return 0, false
}

// Keys returns the stored keys that start with prefix, sorted.
func (s *Store) Keys(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.index {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Capacity = s.geo.Capacity()
	st.Blocks = s.geo.Blocks
	st.FreeBlocks = s.freeBlocks()
	st.LiveBytes = s.liveBytes
	st.Keys = len(s.index)
	return st
}

// Corruptions returns the first damaged records found at mount.
func (s *Store) Corruptions() []CorruptError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.corrupts)
}

// Err returns the write failure that stopped the store, or nil.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// Geometry returns the chip's geometry.
func (s *Store) Geometry() Geometry { return s.geo }

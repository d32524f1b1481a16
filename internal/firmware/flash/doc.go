// Package flash simulates the NOR flash of a microcontroller and keeps the
// firmware's persistent state on it in a crash-consistent key/value store.
//
// # Chips
//
// A [Chip] behaves like NOR flash where it matters for correctness: erased
// bytes read 0xFF, [Chip.Program] may only write erased bytes and never
// crosses a page, [Chip.Erase] resets a whole block. [MemChip] keeps only
// the blocks that were written in memory (an idle device costs a few KiB
// whatever its capacity); [FileChip] keeps one sparse file per device,
// storing the complement of each byte so erased flash is a file hole.
// [Faulty] wraps any chip with power-cut injection: [Faulty.FailAfter] and
// [Faulty.OnWrite] cut power at a chosen write step, which is torn as
// [Faulty.SetTear] says, and the chip stays dead until [Faulty.PowerOn].
//
// # On-flash format
//
// The [Store] is a log of records appended across erase blocks. Each block
// in use starts with a 16-byte header: magic "WBF1", a block sequence
// number that grows with every block started, and a CRC-32C. Records
// follow back to back and never straddle blocks:
//
//	header (32 bytes): kind, key length, data length, a, b, txn, ver, CRC-32C of the header
//	key, data, CRC-32C of key and data
//
// Kinds are put ('P': a fragment of a value — a = value length, b =
// fragment offset, ver = the transaction that first wrote the value),
// delete ('D') and commit ('C': a = number of records in the transaction,
// b = log tail). Values longer than what is left in a block are split into
// fragments. A [Batch] is written as one transaction: its put and delete
// records, all tagged with a fresh transaction id, then a commit record
// carrying their count. Erased flash (0xFF) never parses as a record.
//
// # Crash consistency
//
// Writes only ever go to erased bytes after the end of the log, in order,
// and a transaction's commit record is written last. Mount replays the log
// in block-sequence order and applies a transaction only when its commit
// record is intact, carries the same id, and counts exactly the intact
// records seen for it; anything else — the torn tail of an interrupted
// write, a record whose CRC fails — drops the whole transaction. So after
// a power cut at any write step, mount finds every transaction either
// entirely or not at all. A torn record in the last block seals that block
// (later writes start a fresh one), so nothing is ever programmed over
// half-written bytes.
//
// Space is reclaimed by compacting the oldest block: its live fragments are
// rewritten at the head, keeping their value version, in a transaction
// whose commit record raises the log tail past that block. Mount first
// finds the newest commit record to learn the tail and ignores every block
// below it, so a freed block is dead the moment that commit lands, whether
// or not it has been erased yet — deletes need no tombstone once their
// block is compacted, because the older puts they hide are never replayed.
// The one transaction that may straddle the tail (its first records below
// it, its commit above) is applied from the records that remain: the live
// ones among the others were rewritten by the compaction that moved the
// tail, and are replayed after it.
// Blocks are erased only when reused, just before their header is written;
// an interrupted erase leaves a block without a valid header, which mount
// treats as free. Put and delete records never use the last 36 bytes of a
// block, so one block's live records and a commit record always fit in a
// single fresh block: a compaction never needs more than the block it
// frees. A commit leaves two blocks free, so compaction can always proceed,
// even after a power cut sealed a half-written block; a batch that cannot
// fit even after compaction fails with [ErrNoSpace] before writing anything.
//
// Damaged data never panics: mount skips it, counts it in [Stats] and keeps
// up to a few [CorruptError] values; [Store.Get] returns a *CorruptError
// (errors.Is [ErrCorrupt]) for a value damaged after mount. A damaged record
// at the very end of the log is what a power cut leaves and is counted
// apart, as Stats.TornRecords.
package flash

package flash

import (
	"encoding/binary"
	"hash/crc32"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// On-flash layout constants; see the package documentation.
const (
	blockMagic   = 0x31464257 // "WBF1" little-endian
	blockHdrSize = 16
	recHdrSize   = 32
	recOverhead  = recHdrSize + 4 // header + body CRC

	// MaxKey is the longest key, in bytes.
	MaxKey = 255
	// maxFrag is the largest value fragment one record carries.
	maxFrag = 0xFFFF
	// minFrag is the smallest fragment the writer splits a value into
	// before moving on to a fresh block.
	minFrag = 64
)

// Record kinds. 0xFF is never a kind, so erased flash never parses as a record.
const (
	kindPut    byte = 'P'
	kindDelete byte = 'D'
	kindCommit byte = 'C'
)

// recHdr is a decoded record header.
//
//	off size field
//	0   1    kind
//	1   1    key length
//	2   2    data length
//	4   4    a: put = value length, commit = record count
//	8   4    b: put = fragment offset, commit = log tail block sequence
//	12  8    txn: transaction id
//	20  8    ver: put = value version (id of the txn that first wrote it)
//	28  4    CRC-32C of bytes 0..28
type recHdr struct {
	kind    byte
	keyLen  uint8
	dataLen uint16
	a, b    uint32
	txn     uint64
	ver     uint64
}

func (h recHdr) size() int { return recOverhead + int(h.keyLen) + int(h.dataLen) }

func (h recHdr) encode(dst []byte) {
	_ = dst[recHdrSize-1]
	dst[0] = h.kind
	dst[1] = h.keyLen
	binary.LittleEndian.PutUint16(dst[2:], h.dataLen)
	binary.LittleEndian.PutUint32(dst[4:], h.a)
	binary.LittleEndian.PutUint32(dst[8:], h.b)
	binary.LittleEndian.PutUint64(dst[12:], h.txn)
	binary.LittleEndian.PutUint64(dst[20:], h.ver)
	binary.LittleEndian.PutUint32(dst[28:], crc32.Checksum(dst[:28], castagnoli))
}

// decodeHdr parses a record header; ok is false when the CRC does not
// match or a field is out of range.
func decodeHdr(src []byte) (h recHdr, ok bool) {
	if len(src) < recHdrSize {
		return h, false
	}
	if crc32.Checksum(src[:28], castagnoli) != binary.LittleEndian.Uint32(src[28:]) {
		return h, false
	}
	h = recHdr{
		kind:    src[0],
		keyLen:  src[1],
		dataLen: binary.LittleEndian.Uint16(src[2:]),
		a:       binary.LittleEndian.Uint32(src[4:]),
		b:       binary.LittleEndian.Uint32(src[8:]),
		txn:     binary.LittleEndian.Uint64(src[12:]),
		ver:     binary.LittleEndian.Uint64(src[20:]),
	}
	switch h.kind {
	case kindPut:
		if h.keyLen == 0 || uint64(h.b)+uint64(h.dataLen) > uint64(h.a) || h.ver == 0 || h.ver > h.txn {
			return h, false
		}
	case kindDelete:
		if h.keyLen == 0 || h.dataLen != 0 {
			return h, false
		}
	case kindCommit:
		if h.keyLen != 0 || h.dataLen != 0 {
			return h, false
		}
	default:
		return h, false
	}
	return h, true
}

// bodyCRC is the CRC-32C over key and data.
func bodyCRC(key, data []byte) uint32 {
	return crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, data)
}

// block header:
//
//	off size field
//	0   4    magic "WBF1"
//	4   4    block sequence number (never 0)
//	8   4    reserved, 0
//	12  4    CRC-32C of bytes 0..12
func encodeBlockHdr(dst []byte, seq uint32) {
	binary.LittleEndian.PutUint32(dst[0:], blockMagic)
	binary.LittleEndian.PutUint32(dst[4:], seq)
	binary.LittleEndian.PutUint32(dst[8:], 0)
	binary.LittleEndian.PutUint32(dst[12:], crc32.Checksum(dst[:12], castagnoli))
}

func decodeBlockHdr(src []byte) (seq uint32, ok bool) {
	if len(src) < blockHdrSize ||
		binary.LittleEndian.Uint32(src[0:]) != blockMagic ||
		binary.LittleEndian.Uint32(src[8:]) != 0 ||
		crc32.Checksum(src[:12], castagnoli) != binary.LittleEndian.Uint32(src[12:]) {
		return 0, false
	}
	seq = binary.LittleEndian.Uint32(src[4:])
	return seq, seq != 0
}

func allFF(p []byte) bool {
	for _, c := range p {
		if c != 0xFF {
			return false
		}
	}
	return true
}

package flash

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Default geometry of the simulated NOR parts: 4 KiB erase sectors
// programmed in 256-byte pages, as on the SPI flash of both the HiFive1
// and common ESP32 modules.
const (
	DefaultBlockSize = 4096
	DefaultPageSize  = 256
)

// Errors returned by chips. Callers branch on them with errors.Is.
var (
	// ErrPowerCut reports that the simulated supply was cut during or
	// before the operation; the chip refuses every operation until it is
	// powered on again (see Faulty).
	ErrPowerCut = errors.New("flash: power cut")
	// ErrNotErased reports a program of bytes that are not erased: NOR
	// flash can only clear bits, so software that rewrites without an erase
	// has a bug.
	ErrNotErased = errors.New("flash: program over bytes that are not erased")
	// ErrOutOfRange reports an address or block outside the chip.
	ErrOutOfRange = errors.New("flash: address out of range")
	// ErrPageBoundary reports a program that crosses a page boundary.
	ErrPageBoundary = errors.New("flash: program crosses a page boundary")
)

// Geometry describes a flash part.
type Geometry struct {
	// PageSize is the program granularity: one Program call never crosses
	// a page boundary.
	PageSize int
	// BlockSize is the erase granularity (sector size).
	BlockSize int
	// Blocks is the number of erase blocks.
	Blocks int
}

// GeometryFor returns the default geometry with as many whole blocks as fit
// in capacity bytes.
func GeometryFor(capacity int64) Geometry {
	return Geometry{PageSize: DefaultPageSize, BlockSize: DefaultBlockSize, Blocks: int(capacity / DefaultBlockSize)}
}

// Capacity returns the size of the part in bytes.
func (g Geometry) Capacity() int64 { return int64(g.BlockSize) * int64(g.Blocks) }

// Validate reports whether g describes a part this package can drive:
// power-of-two page and block sizes, 1 KiB ≤ block ≤ 64 KiB, at least eight
// blocks and less than 4 GiB in total.
func (g Geometry) Validate() error {
	pow2 := func(n int) bool { return n > 0 && n&(n-1) == 0 }
	switch {
	case !pow2(g.PageSize) || !pow2(g.BlockSize):
		return fmt.Errorf("flash geometry: page size %d and block size %d must be powers of two", g.PageSize, g.BlockSize)
	case g.PageSize > g.BlockSize:
		return fmt.Errorf("flash geometry: page size %d larger than block size %d", g.PageSize, g.BlockSize)
	case g.BlockSize < 1024 || g.BlockSize > 64<<10:
		return fmt.Errorf("flash geometry: block size %d outside [1024, 65536]", g.BlockSize)
	case g.Blocks < 8:
		return fmt.Errorf("flash geometry: %d blocks, need at least 8", g.Blocks)
	case g.Capacity() >= 1<<32:
		return fmt.Errorf("flash geometry: capacity %d not below 4 GiB", g.Capacity())
	}
	return nil
}

// Chip is a NOR flash part. Erased bytes read as 0xFF; Program may only
// write erased bytes and never crosses a page; Erase sets a whole block back
// to 0xFF. Each Program and Erase is one write step, the unit at which a
// power cut can strike (see Faulty).
type Chip interface {
	Geometry() Geometry
	ReadAt(p []byte, off int64) (int, error)
	Program(off int64, p []byte) error
	Erase(block int) error
}

func checkRead(g Geometry, n int, off int64) error {
	if off < 0 || off+int64(n) > g.Capacity() {
		return fmt.Errorf("read %d bytes at %d: %w", n, off, ErrOutOfRange)
	}
	return nil
}

func checkProgram(g Geometry, n int, off int64) error {
	if off < 0 || off+int64(n) > g.Capacity() {
		return fmt.Errorf("program %d bytes at %d: %w", n, off, ErrOutOfRange)
	}
	if n > 0 && off/int64(g.PageSize) != (off+int64(n)-1)/int64(g.PageSize) {
		return fmt.Errorf("program %d bytes at %d: %w", n, off, ErrPageBoundary)
	}
	return nil
}

func checkErase(g Geometry, block int) error {
	if block < 0 || block >= g.Blocks {
		return fmt.Errorf("erase block %d: %w", block, ErrOutOfRange)
	}
	return nil
}

// MemChip is an in-memory Chip. Blocks are allocated only once programmed,
// so an idle device holding a few kilobytes of state costs a few kilobytes
// of memory regardless of the part's capacity.
type MemChip struct {
	mu     sync.Mutex
	geo    Geometry
	blocks map[int32][]byte
}

// NewMem returns an erased in-memory chip.
func NewMem(g Geometry) (*MemChip, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return &MemChip{geo: g, blocks: make(map[int32][]byte)}, nil
}

// Geometry implements Chip.
func (m *MemChip) Geometry() Geometry { return m.geo }

// ReadAt implements Chip.
func (m *MemChip) ReadAt(p []byte, off int64) (int, error) {
	if err := checkRead(m.geo, len(p), off); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	bs := int64(m.geo.BlockSize)
	for done := 0; done < len(p); {
		a := off + int64(done)
		b, o := int32(a/bs), int(a%bs) //nolint:gosec // a block index: the chip is below 4 GiB (Geometry.Validate)
		n := min(len(p)-done, int(bs)-o)
		if blk := m.blocks[b]; blk != nil {
			copy(p[done:done+n], blk[o:])
		} else {
			fill(p[done:done+n], 0xFF)
		}
		done += n
	}
	return len(p), nil
}

// Program implements Chip.
func (m *MemChip) Program(off int64, p []byte) error {
	if err := checkProgram(m.geo, len(p), off); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	bs := int64(m.geo.BlockSize)
	b, o := int32(off/bs), int(off%bs) //nolint:gosec // a block index: the chip is below 4 GiB (Geometry.Validate)
	blk := m.blocks[b]
	if blk == nil {
		blk = make([]byte, bs)
		fill(blk, 0xFF)
		m.blocks[b] = blk
	}
	for _, c := range blk[o : o+len(p)] {
		if c != 0xFF {
			return fmt.Errorf("program %d bytes at %d: %w", len(p), off, ErrNotErased)
		}
	}
	copy(blk[o:], p)
	return nil
}

// Erase implements Chip.
func (m *MemChip) Erase(block int) error {
	if err := checkErase(m.geo, block); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.blocks, int32(block)) //nolint:gosec // a block index: the chip is below 4 GiB (Geometry.Validate)
	m.mu.Unlock()
	return nil
}

// Corrupt XORs the byte at off with mask, bypassing NOR rules: it models
// bit rot and lets tests check that corruption is detected.
func (m *MemChip) Corrupt(off int64, mask byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	bs := int64(m.geo.BlockSize)
	b := int32(off / bs) //nolint:gosec // a block index: the chip is below 4 GiB (Geometry.Validate)
	blk := m.blocks[b]
	if blk == nil {
		blk = make([]byte, bs)
		fill(blk, 0xFF)
		m.blocks[b] = blk
	}
	blk[off%bs] ^= mask
}

// Clone returns an independent copy of the chip's contents.
func (m *MemChip) Clone() *MemChip {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &MemChip{geo: m.geo, blocks: make(map[int32][]byte, len(m.blocks))}
	for b, blk := range m.blocks {
		c.blocks[b] = append([]byte(nil), blk...)
	}
	return c
}

// Footprint returns the bytes of block storage the chip holds in memory.
func (m *MemChip) Footprint() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.blocks) * m.geo.BlockSize
}

// FileChip is a Chip backed by one file per device. The file holds the
// bitwise complement of the flash contents, so erased flash (0xFF) is stored
// as zero bytes and a mostly empty part is a sparse file on disk.
type FileChip struct {
	mu  sync.Mutex
	f   *os.File
	geo Geometry
}

// OpenFile opens or creates the file at path as a chip with geometry g. An
// existing file must have exactly g's capacity.
func OpenFile(path string, g Geometry) (*FileChip, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) //nolint:gosec // the flash image in the device's state directory, chosen by the operator
	if err != nil {
		return nil, fmt.Errorf("open flash file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("stat flash file: %w", err)
	}
	switch fi.Size() {
	case g.Capacity():
	case 0:
		if err := f.Truncate(g.Capacity()); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("size flash file: %w", err)
		}
	default:
		_ = f.Close()
		return nil, fmt.Errorf("open flash file %s: size %d, want %d", path, fi.Size(), g.Capacity())
	}
	return &FileChip{f: f, geo: g}, nil
}

// Close closes the backing file.
func (c *FileChip) Close() error { return c.f.Close() }

// Geometry implements Chip.
func (c *FileChip) Geometry() Geometry { return c.geo }

// ReadAt implements Chip.
func (c *FileChip) ReadAt(p []byte, off int64) (int, error) {
	if err := checkRead(c.geo, len(p), off); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.f.ReadAt(p, off)
	if errors.Is(err, io.EOF) && n == len(p) {
		err = nil
	}
	if err != nil {
		return n, fmt.Errorf("read flash file: %w", err)
	}
	invert(p)
	return n, nil
}

// Program implements Chip.
func (c *FileChip) Program(off int64, p []byte) error {
	if err := checkProgram(c.geo, len(p), off); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var stack [DefaultPageSize]byte
	buf := stack[:0]
	if len(p) > len(stack) {
		buf = make([]byte, 0, len(p))
	}
	buf = buf[:len(p)]
	if _, err := c.f.ReadAt(buf, off); err != nil {
		return fmt.Errorf("read flash file: %w", err)
	}
	for i, b := range buf {
		if b != 0 {
			return fmt.Errorf("program %d bytes at %d: %w", len(p), off, ErrNotErased)
		}
		buf[i] = ^p[i]
	}
	if _, err := c.f.WriteAt(buf, off); err != nil {
		return fmt.Errorf("write flash file: %w", err)
	}
	return nil
}

// Erase implements Chip.
func (c *FileChip) Erase(block int) error {
	if err := checkErase(c.geo, block); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	zero := make([]byte, c.geo.BlockSize)
	if _, err := c.f.WriteAt(zero, int64(block)*int64(c.geo.BlockSize)); err != nil {
		return fmt.Errorf("erase flash file: %w", err)
	}
	return nil
}

// Corrupt XORs the byte at off with mask, bypassing NOR rules.
func (c *FileChip) Corrupt(off int64, mask byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b [1]byte
	if _, err := c.f.ReadAt(b[:], off); err != nil {
		return fmt.Errorf("read flash file: %w", err)
	}
	b[0] ^= mask
	if _, err := c.f.WriteAt(b[:], off); err != nil {
		return fmt.Errorf("write flash file: %w", err)
	}
	return nil
}

func fill(p []byte, v byte) {
	for i := range p {
		p[i] = v
	}
}

func invert(p []byte) {
	for i := range p {
		p[i] = ^p[i]
	}
}

package dashboard

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
)

// etag identifies this build's files: a hash of every embedded file's name
// and content.
var etag = func() string {
	h := sha256.New()
	err := fs.WalkDir(static, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		h.Write([]byte(p))
		h.Write([]byte{0})
		h.Write(b)
		return nil
	})
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return `"` + hex.EncodeToString(h.Sum(nil))[:20] + `"`
}()

// Package kubectli18n stops the kubectl linked into wasmbed from loading its
// message catalogue at start-up when the catalogue would change nothing.
//
// kubectl translates its help texts through package i18n, and its packages
// call i18n.T in package-level variables, so the first call happens while
// the program initialises: every wasmbed subcommand used to parse kubectl's
// English catalogue (about 4 MiB allocated, kept live) before main ran. The
// English catalogues ("default" and "en_US") map every message to itself,
// so for an English or unset locale this package makes the load a no-op;
// for another language kubectl knows, it loads the catalogue as kubectl
// would.
//
// It takes effect through its init function, which runs before any
// package that calls i18n.T: Go initialises, among the packages whose
// dependencies are ready, the one with the smallest import path first, and
// this package needs nothing but i18n and sorts before every k8s.io
// package. [Err] reports whether it was in time.
package kubectli18n

import (
	"os"
	"strings"

	"k8s.io/kubectl/pkg/util/i18n"
)

var (
	registerErr error
	loaded      bool
)

func init() {
	registerErr = i18n.SetLoadTranslationsFunc(load)
}

// Err returns the error of registering the loader: non-nil when kubectl
// had already loaded its catalogue, which means this package's init ran
// too late to save anything.
func Err() error { return registerErr }

// Loaded reports whether a catalogue was loaded (a non-English locale).
func Loaded() bool { return loaded }

func load() error {
	if English(os.Getenv) {
		return nil
	}
	loaded = true
	return i18n.LoadTranslations("kubectl", nil)
}

// English reports whether kubectl surely picks one of its English
// catalogues for the locale in getenv's LC_ALL, LC_MESSAGES and LANG (the
// first one set): unset, a value without exactly one encoding suffix (such
// as "C"), or a C, POSIX or English language. Any other locale is left to
// kubectl, which falls back to English for languages it has no catalogue
// of.
func English(getenv func(string) string) bool {
	lang := getenv("LC_ALL")
	if lang == "" {
		lang = getenv("LC_MESSAGES")
	}
	if lang == "" {
		lang = getenv("LANG")
	}
	// kubectl reads "language.encoding" and falls back to its default
	// (English) catalogue for anything else.
	name, _, ok := strings.Cut(lang, ".")
	if !ok || strings.Count(lang, ".") != 1 {
		return true
	}
	return name == "C" || name == "POSIX" || name == "default" || name == "en" || strings.HasPrefix(name, "en_")
}

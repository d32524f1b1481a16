package httpapi

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Bounds of list queries.
const (
	// DefaultLimit is the page size of a list without a limit.
	DefaultLimit = 100
	// MaxLimit is the largest page a list returns.
	MaxLimit = 500
	// maxSelectorLength bounds a label selector.
	maxSelectorLength = 1024
	// maxContinueLength bounds a continue token: two object names and a
	// fingerprint, base64-encoded.
	maxContinueLength = 1024
	// maxFilterValues bounds the values of a repeatable filter.
	maxFilterValues = 16
)

// Query parameter names.
const (
	qLimit    = "limit"
	qContinue = "continue"
	qSelector = "labelSelector"
	qPhase    = "phase"
	qType     = "type"
	qGateway  = "gateway"
	qSearch   = "search"
	qWatch    = "watch"
)

// objKey orders listed objects: by namespace, then name.
type objKey struct {
	Namespace string `json:"n,omitempty"`
	Name      string `json:"o"`
}

func (k objKey) compare(o objKey) int {
	return cmp.Or(strings.Compare(k.Namespace, o.Namespace), strings.Compare(k.Name, o.Name))
}

// listQuery is a validated list query.
type listQuery struct {
	limit    int
	after    *objKey
	selector labels.Selector
	phases   []string
	types    []string
	gateway  string
	search   string
	// fingerprint identifies the query without its page, so that a
	// continue token is only used with the query that issued it.
	fingerprint string
}

// filterSpec says which filters a list route takes and which values its
// phase and type filters allow.
type filterSpec struct {
	selector bool
	phases   []string
	types    []string
	gateway  bool
	search   bool
}

// params returns the query parameters a list with these filters accepts.
func (f filterSpec) params() []string {
	ps := []string{qLimit, qContinue}
	if f.selector {
		ps = append(ps, qSelector)
	}
	if f.phases != nil {
		ps = append(ps, qPhase)
	}
	if f.types != nil {
		ps = append(ps, qType)
	}
	if f.gateway {
		ps = append(ps, qGateway)
	}
	if f.search {
		ps = append(ps, qSearch)
	}
	return ps
}

// checkParams refuses query parameters a route does not take, so that a
// misspelt filter is an error rather than an unfiltered answer.
func checkParams(q url.Values, allowed []string) error {
	var errs []FieldError
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range q {
			if !yield(k) {
				return
			}
		}
	}) {
		if !slices.Contains(allowed, k) {
			errs = append(errs, FieldError{Field: k, Detail: "unknown query parameter; this route takes: " + strings.Join(allowed, ", ")})
		}
	}
	if len(errs) > 0 {
		return invalid("unknown query parameter", errs...)
	}
	return nil
}

// parseList validates a list query. scope identifies the listed collection
// (route and namespace) in the fingerprint.
func parseList(q url.Values, f filterSpec, scope string) (*listQuery, error) {
	lq := &listQuery{limit: DefaultLimit}
	var errs []FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	single := func(name string) string {
		vs := q[name]
		if len(vs) > 1 {
			bad(name, "given %d times, at most once", len(vs))
		}
		if len(vs) == 0 {
			return ""
		}
		return vs[0]
	}
	if s := single(qLimit); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			bad(qLimit, "must be an integer from 1 to %d", MaxLimit)
		} else {
			lq.limit = n
		}
	}
	if f.selector {
		if s := single(qSelector); s != "" {
			if len(s) > maxSelectorLength {
				bad(qSelector, "longer than %d characters", maxSelectorLength)
			} else if sel, err := labels.Parse(s); err != nil {
				bad(qSelector, "%v", err)
			} else {
				lq.selector = sel
			}
		}
	}
	multi := func(name string, allowed []string) []string {
		var out []string
		for _, v := range q[name] {
			for s := range strings.SplitSeq(v, ",") {
				if s == "" {
					continue
				}
				if !slices.Contains(allowed, s) {
					bad(name, "unsupported value %q: supported values: %s", s, strings.Join(allowed, ", "))
					continue
				}
				if !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
		if len(out) > maxFilterValues {
			bad(name, "more than %d values", maxFilterValues)
		}
		slices.Sort(out)
		return out
	}
	if f.phases != nil {
		lq.phases = multi(qPhase, f.phases)
	}
	if f.types != nil {
		lq.types = multi(qType, f.types)
	}
	if f.gateway {
		lq.gateway = single(qGateway)
		if len(lq.gateway) > validation.DNS1123SubdomainMaxLength {
			bad(qGateway, "longer than %d characters", validation.DNS1123SubdomainMaxLength)
		}
	}
	if f.search {
		lq.search = strings.ToLower(single(qSearch))
		if len(lq.search) > validation.DNS1123SubdomainMaxLength {
			bad(qSearch, "longer than %d characters", validation.DNS1123SubdomainMaxLength)
		}
	}
	sel := ""
	if lq.selector != nil {
		sel = lq.selector.String()
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{scope, sel, strings.Join(lq.phases, ","),
		strings.Join(lq.types, ","), lq.gateway, lq.search}, "\x00")))
	lq.fingerprint = hex.EncodeToString(sum[:8])
	if s := single(qContinue); s != "" {
		k, err := decodeContinue(s, lq.fingerprint)
		if err != nil {
			bad(qContinue, "%v", err)
		} else {
			lq.after = &k
		}
	}
	if len(errs) > 0 {
		return nil, invalid("invalid list query", errs...)
	}
	return lq, nil
}

// continueToken is the decoded form of a continue token.
type continueToken struct {
	After       objKey `json:"a"`
	Fingerprint string `json:"q"`
}

func encodeContinue(after objKey, fingerprint string) string {
	b, _ := json.Marshal(continueToken{After: after, Fingerprint: fingerprint})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeContinue checks a continue token and returns the key after which the
// next page starts.
func decodeContinue(s, fingerprint string) (objKey, error) {
	if len(s) > maxContinueLength {
		return objKey{}, fmt.Errorf("token longer than %d characters", maxContinueLength)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return objKey{}, fmt.Errorf("malformed token")
	}
	var t continueToken
	if err := json.Unmarshal(b, &t); err != nil || t.After.Name == "" {
		return objKey{}, fmt.Errorf("malformed token")
	}
	if t.Fingerprint != fingerprint {
		return objKey{}, fmt.Errorf("the token belongs to another query; repeat the query's filters or start again without it")
	}
	return t.After, nil
}

// matchSearch reports whether any of names starts with the (lower-case)
// search prefix.
func (lq *listQuery) matchSearch(names ...string) bool {
	if lq.search == "" {
		return true
	}
	for _, n := range names {
		if len(n) >= len(lq.search) && strings.EqualFold(n[:len(lq.search)], lq.search) {
			return true
		}
	}
	return false
}

func (lq *listQuery) matchPhase(phase string) bool {
	return len(lq.phases) == 0 || slices.Contains(lq.phases, phase)
}

func (lq *listQuery) matchType(t string) bool {
	return len(lq.types) == 0 || slices.Contains(lq.types, t)
}

func (lq *listQuery) matchLabels(l map[string]string) bool {
	return lq.selector == nil || lq.selector.Matches(labels.Set(l))
}

// Page is one page of a list.
type Page[T any] struct {
	// Items are the page's objects, ordered by namespace, then name.
	Items []T `json:"items"`
	// Total counts the objects matching the query's filters, on every page.
	Total int `json:"total"`
	// Continue, when set, fetches the next page when passed back as the
	// continue parameter with the same filters.
	Continue string `json:"continue,omitempty"`
}

// paginate selects the page of items that match, after the query's continue
// key, in key order, and converts it with view. It copies no item that is
// not on the page, and keeps only a page's worth of candidates while it
// scans: O(n log limit), not a sort of every match.
func paginate[S any, T any](items []*S, lq *listQuery, key func(*S) objKey, match func(*S) bool, view func(*S) T) Page[T] {
	total, after := 0, 0
	// page is a max-heap by key of the best candidates so far.
	page := make([]*S, 0, min(lq.limit, len(items)))
	less := func(a, b *S) bool { return key(a).compare(key(b)) < 0 }
	for _, it := range items {
		if !match(it) {
			continue
		}
		total++
		if lq.after != nil && key(it).compare(*lq.after) <= 0 {
			continue
		}
		after++
		switch {
		case len(page) < lq.limit:
			page = append(page, it)
			siftUp(page, len(page)-1, less)
		case less(it, page[0]):
			page[0] = it
			siftDown(page, 0, less)
		}
	}
	slices.SortFunc(page, func(a, b *S) int { return key(a).compare(key(b)) })
	p := Page[T]{Items: make([]T, 0, len(page)), Total: total}
	for _, it := range page {
		p.Items = append(p.Items, view(it))
	}
	if after > len(page) {
		p.Continue = encodeContinue(key(page[len(page)-1]), lq.fingerprint)
	}
	return p
}

// siftUp and siftDown keep h a max-heap under less.
func siftUp[E any](h []E, i int, less func(a, b E) bool) {
	for i > 0 {
		parent := (i - 1) / 2
		if !less(h[parent], h[i]) {
			return
		}
		h[parent], h[i] = h[i], h[parent]
		i = parent
	}
}

func siftDown[E any](h []E, i int, less func(a, b E) bool) {
	for {
		largest, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && less(h[largest], h[l]) {
			largest = l
		}
		if r < len(h) && less(h[largest], h[r]) {
			largest = r
		}
		if largest == i {
			return
		}
		h[i], h[largest] = h[largest], h[i]
		i = largest
	}
}

func parseBool(q url.Values, name string) (bool, error) {
	vs := q[name]
	if len(vs) == 0 {
		return false, nil
	}
	b, err := strconv.ParseBool(vs[0])
	if err != nil || len(vs) > 1 {
		return false, invalidField(name, "must be given once, true or false")
	}
	return b, nil
}

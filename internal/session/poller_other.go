//go:build !linux

package session

import "errors"

// On platforms without epoll each session keeps a reader goroutine.
type poller struct{}

type parkState struct{}

var errNoPoller = errors.New("no poller on this platform")

func newPoller(*Server) (*poller, error) { return nil, errNoPoller }
func (*poller) add(*Session) error       { return errNoPoller }
func (*poller) remove(*Session)          {}
func (*poller) close()                   {}

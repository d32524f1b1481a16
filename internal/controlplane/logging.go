package controlplane

import (
	"context"
	"log/slog"
	"sync/atomic"

	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// levelFilter passes on records at or above min; etcd and kube-apiserver log
// far more at info level than an operator wants to read.
type levelFilter struct {
	min  slog.Level
	next slog.Handler
}

func (h levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.next.Enabled(ctx, l)
}

// benignMessages are lines etcd and kube-apiserver log above info level on
// every first start or clean stop of a single-node, loopback control plane.
// They are demoted to debug so that an operator sees only what needs a look.
var benignMessages = map[string]bool{
	"The manifest file is empty, ignoring.":     true,
	"Failed to ensure lease exists, will retry": true,
	"Found stale data, removed previous endpoints on kubernetes service, apiserver didn't exit successfully previously": true,
	"Error while syncing ConfigMap": true,
	"Running http and grpc server on single port. This is not recommended for production.": true,
	"simple token is not cryptographically signed":                                         true,
}

func (h levelFilter) Handle(ctx context.Context, r slog.Record) error {
	if benignMessages[r.Message] {
		if r.Level <= slog.LevelDebug || !h.next.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r = r.Clone()
		r.Level = slog.LevelDebug
	}
	return h.next.Handle(ctx, r)
}

func (h levelFilter) WithAttrs(attrs []slog.Attr) slog.Handler {
	return levelFilter{min: h.min, next: h.next.WithAttrs(attrs)}
}

func (h levelFilter) WithGroup(name string) slog.Handler {
	return levelFilter{min: h.min, next: h.next.WithGroup(name)}
}

// slogCore is a zapcore.Core that writes etcd's zap records to slog. Once
// quiet is set (during shutdown), records are demoted to debug: etcd reports
// its listeners closing as errors.
type slogCore struct {
	logger *slog.Logger
	quiet  *atomic.Bool
	fields []zapcore.Field
}

func zapToSlogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (c slogCore) level(l zapcore.Level) slog.Level {
	if c.quiet != nil && c.quiet.Load() {
		return slog.LevelDebug
	}
	return zapToSlogLevel(l)
}

// Enabled implements zapcore.LevelEnabler. zapcore.Core carries no context
// (nor do etcd's log entries): the background context is the only one there
// is.
func (c slogCore) Enabled(l zapcore.Level) bool {
	return c.logger.Enabled(context.Background(), c.level(l))
}

func (c slogCore) With(fields []zapcore.Field) zapcore.Core {
	return slogCore{logger: c.logger, quiet: c.quiet, fields: append(c.fields[:len(c.fields):len(c.fields)], fields...)}
}

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	// No context reaches a zapcore.Core (see Enabled).
	c.logger.LogAttrs(context.Background(), c.level(e.Level), e.Message, attrs...) //nolint:sloglint // etcd's messages pass through as they are
	return nil
}

func (c slogCore) Sync() error { return nil }

// withCodec fills in what an unversioned REST client needs to talk to /readyz.
func withCodec(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &schema.GroupVersion{}
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	return c
}

package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// instruction is one line of a Dockerfile, continuation lines joined.
type instruction struct {
	op, args string
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for line := range strings.SplitSeq(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if more, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(more + " ")
			continue
		}
		cur.WriteString(line)
		op, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(op), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// TestDockerfile checks the Dockerfile builds the binary the way the
// Makefile releases it, statically, with the Go release go.mod asks for,
// into a distroless image run as the non-root user the manifests run the
// pods as.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, filepath.Join("..", "Dockerfile"))
	var froms []string
	var goVersion, user, entrypoint, copyFrom string
	var build []string
	for _, in := range ins {
		switch in.op {
		case "ARG":
			if v, ok := strings.CutPrefix(in.args, "GO_VERSION="); ok {
				goVersion = v
			}
		case "FROM":
			froms = append(froms, in.args)
		case "RUN":
			if strings.Contains(in.args, "make release") {
				build = append(build, in.args)
			}
		case "COPY":
			if strings.HasPrefix(in.args, "--from=build ") {
				copyFrom = in.args
			}
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		}
	}

	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil || goVersion != string(m[1]) {
		t.Errorf("ARG GO_VERSION=%s, want go.mod's %s", goVersion, m[1])
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:${GO_VERSION}") || !strings.HasSuffix(froms[0], " AS build") {
		t.Fatalf("stages %q: want a golang:${GO_VERSION} build stage and a final one", froms)
	}
	if final := froms[1]; !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final stage %q: want distroless static or scratch (a static binary needs no C library)", final)
	}
	if len(build) != 1 || !strings.Contains(build[0], "CGO_ENABLED=0 make release") || !strings.Contains(build[0], "BIN=/out") {
		t.Errorf("build steps %q: want one CGO_ENABLED=0 make release into BIN=/out", build)
	}
	makefile, err := os.ReadFile(filepath.Join("..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	release := regexp.MustCompile(`(?m)^release:.*\n\t(.*)$`).FindSubmatch(makefile)
	if release == nil || !strings.Contains(string(release[1]), "-trimpath") || !strings.Contains(string(release[1]), "-o $(BIN)/wasmbed ./cmd/wasmbed") {
		t.Errorf("Makefile release recipe %q: want a -trimpath build of ./cmd/wasmbed into $(BIN)/wasmbed", release)
	}
	if copyFrom != "--from=build /out/wasmbed /usr/local/bin/wasmbed" {
		t.Errorf("COPY %q: want the built binary in /usr/local/bin", copyFrom)
	}
	if entrypoint != `["/usr/local/bin/wasmbed"]` {
		t.Errorf("ENTRYPOINT %s: want the binary, in exec form", entrypoint)
	}

	uid, _, _ := strings.Cut(user, ":")
	n, err := strconv.ParseInt(uid, 10, 64)
	if err != nil || n == 0 {
		t.Fatalf("USER %q: want a numeric non-root user (runAsNonRoot can check only numbers)", user)
	}
	mf := load(t)
	for _, ident := range []string{"Deployment/wasmbed-system/wasmbed-controller", "StatefulSet/wasmbed-system/wasmbed-gateway"} {
		var sc *int64
		switch {
		case strings.HasPrefix(ident, "Deployment/"):
			sc = get[appsv1.Deployment](t, mf, ident).Spec.Template.Spec.SecurityContext.RunAsUser
		default:
			sc = get[appsv1.StatefulSet](t, mf, ident).Spec.Template.Spec.SecurityContext.RunAsUser
		}
		if sc == nil || *sc != n {
			t.Errorf("%s runs as %v, the image as %d", ident, sc, n)
		}
	}
}

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/examples/apps"
)

// chromium returns the browser to drive, or skips the test saying why.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on PATH (set CHROMIUM, or run hack/ensure-tools.sh, which installs Debian's chromium): the dashboard's browser test needs one")
	return ""
}

// browserProfile is a profile directory removed after the test. Not
// t.TempDir: Chromium's helper processes may still write into the profile
// for a moment after the browser was stopped, and t.TempDir's removal then
// fails the test; this one retries for a while, then only logs.
func browserProfile(t *testing.T) string {
	dir, err := os.MkdirTemp("", "wasmbed-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var err error
		for range 50 {
			if err = os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("chromium profile %s left behind: %v", dir, err)
	})
	return dir
}

// browser starts a headless Chromium with a fresh profile, kept off the
// network but for the gateway on loopback.
func browser(t *testing.T, exe string) context.Context {
	t.Helper()
	profile := browserProfile(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// page drives one tab, failing the test with what it was doing.
type page struct {
	t     *testing.T
	ctx   context.Context
	url   string
	shots string
}

func (p *page) do(what string, actions ...chromedp.Action) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		var body string
		_ = chromedp.Run(p.ctx, chromedp.Text("main", &body, chromedp.ByQuery))
		p.t.Fatalf("%s: %v\npage shows: %s", what, err, body)
	}
}

// waitJS waits until the JavaScript expression is true.
func (p *page) waitJS(what, expr string) {
	p.t.Helper()
	var ok bool
	p.do("wait for "+what, chromedp.Poll(expr, &ok, chromedp.WithPollingTimeout(80*time.Second), chromedp.WithPollingInterval(100*time.Millisecond)))
}

func (p *page) text(sel string) string {
	p.t.Helper()
	var s string
	p.do("read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery))
	return s
}

func (p *page) count(sel string) int {
	p.t.Helper()
	var n int
	p.do("count "+sel, chromedp.Evaluate(fmt.Sprintf("document.querySelectorAll(%q).length", sel), &n))
	return n
}

func (p *page) open(hash string) {
	p.t.Helper()
	p.do("open "+hash, chromedp.Navigate(p.url+"/ui/"+hash))
}

func (p *page) signIn(token string) {
	p.t.Helper()
	p.open("#/signin")
	p.do("sign in", chromedp.WaitVisible("#token", chromedp.ByQuery), chromedp.SetValue("#token", token, chromedp.ByQuery),
		chromedp.Click("form.signin button[type=submit]", chromedp.ByQuery))
}

// screenshot saves the page as name.png when screenshots are asked for.
func (p *page) screenshot(name string) {
	p.t.Helper()
	if p.shots == "" {
		return
	}
	var png []byte
	p.do("screenshot "+name, chromedp.Sleep(300*time.Millisecond), chromedp.FullScreenshot(&png, 100))
	if err := os.WriteFile(filepath.Join(p.shots, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// TestDashboard signs in with each role's token against a running platform
// and uses the dashboard as a person would: the fleet shows up, an
// operator deploys an application from a .wasm file and watches it reach
// Running, a viewer is refused the deploy, a token Kubernetes refuses is a
// 401 and a role without permissions sees the API's 403.
func TestDashboard(t *testing.T) {
	exe := chromium(t)
	const devices = 9
	pf := startPlatform(t, devices)
	shots := os.Getenv("WASMBED_SCREENSHOTS")
	if shots != "" {
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := &page{t: t, ctx: browser(t, exe), url: pf.url, shots: shots}

	// A browser at the gateway's root lands on the sign-in page; a token
	// Kubernetes refuses is a 401, shown as such.
	p.do("open the gateway", chromedp.Navigate(pf.url+"/"))
	p.waitJS("the sign-in page", `location.pathname === "/ui/" && location.hash === "#/signin" && !!document.querySelector("#token")`)
	p.do("sign in with a bad token", chromedp.SetValue("#token", "not-a-token", chromedp.ByQuery),
		chromedp.Click("form.signin button[type=submit]", chromedp.ByQuery))
	p.waitJS("the 401", `!!document.querySelector('#signin-error .problem[data-status="401"]')`)
	if got := p.text("#signin-error h2"); got != "401 Unauthorized" {
		t.Errorf("bad token: heading %q, want 401 Unauthorized", got)
	}

	// The operator sees the simulated fleet.
	p.signIn(pf.tokens["operator"])
	p.waitJS("the fleet overview", fmt.Sprintf(`(() => { const a = document.querySelector("#dev-h + .big a"); return !!a && a.textContent === "%d"; })()`, devices))
	if n := p.count(`section[aria-labelledby="dev-h"] tbody tr`); n != 7 {
		t.Errorf("devices by phase: %d rows, want one per phase", n)
	}
	p.waitJS("the gateway's sessions", fmt.Sprintf(`[...document.querySelectorAll('section[aria-labelledby="type-h"] tbody tr')].some((r) => r.textContent === "gw-0%d")`, devices))
	p.screenshot("overview")

	// The device list: every device, then filtered on the server.
	p.open("#/devices")
	p.waitJS("the device list", fmt.Sprintf(`document.querySelectorAll(".vrow").length === %d && document.querySelector("#device-count").textContent === "%d devices"`, devices, devices))
	p.do("filter on the board type", chromedp.SetValue("#f-type", "hifive1", chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector("#f-type").dispatchEvent(new Event("change", {bubbles: true}))`, nil))
	p.waitJS("the filtered list", fmt.Sprintf(`document.querySelector("#device-count").textContent === "%d devices" && [...document.querySelectorAll(".vrow")].every((r) => r.textContent.includes("hifive1"))`, devices/3))
	p.screenshot("devices")

	// A device page: its gateway, certificate expiry and metrics.
	p.do("open a device", chromedp.Click(".vrow a", chromedp.ByQuery))
	p.waitJS("the device page", `location.hash.startsWith("#/devices/") && !!document.querySelector("dl.facts") && document.querySelector(".spark svg") !== null`)
	facts := p.text("dl.facts")
	for _, want := range []string{"Connected", "gw-0", "Certificate expires", "hifive1"} {
		if !strings.Contains(facts, want) {
			t.Errorf("device page lacks %q: %s", want, facts)
		}
	}
	p.screenshot("device")

	// The operator deploys blinky to named devices from a .wasm file and
	// watches the rollout reach Running.
	module := filepath.Join(t.TempDir(), "blinky.wasm")
	if err := os.WriteFile(module, apps.MustLoad(apps.Blinky), 0o644); err != nil {
		t.Fatal(err)
	}
	var list wasmbedv1.DeviceList
	if err := env.Client.List(t.Context(), &list, client.InNamespace(pf.ns)); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range list.Items {
		names = append(names, d.Name)
	}
	p.open("#/applications")
	p.do("open the deploy form", chromedp.Click(`a[href="#/deploy"]`, chromedp.ByQuery), chromedp.WaitVisible("form.deploy", chromedp.ByQuery))
	p.do("fill the deploy form",
		chromedp.SetValue("#name", "blinky", chromedp.ByQuery),
		chromedp.SetValue("#version", "1.0", chromedp.ByQuery),
		chromedp.SetValue("#targets", strings.Join(names, ", "), chromedp.ByQuery),
		chromedp.SetValue("#memoryLimit", "65536", chromedp.ByQuery),
		chromedp.SetValue("#executionTimeout", "1s", chromedp.ByQuery),
		chromedp.SetUploadFiles("#module", []string{module}, chromedp.ByQuery))
	p.screenshot("deploy")
	p.do("deploy", chromedp.Click("form.deploy button[type=submit]", chromedp.ByQuery))
	p.waitJS("the application page", `location.hash === "#/applications/`+pf.ns+`/blinky"`)
	p.waitJS("blinky Running on every device", fmt.Sprintf(`(() => {
		const phase = document.querySelector('section[aria-labelledby="app-h"] .badge');
		const rows = [...document.querySelectorAll("table.rollout tbody tr")];
		return !!phase && phase.textContent === "Running" && rows.length === %d && rows.every((r) => r.children[1].textContent === "Running");
	})()`, devices))
	if n := p.count(`button[data-op="stopApplication"], button[data-op="deleteApplication"]`); n != 2 {
		t.Errorf("the operator is offered %d of stop and delete, want both", n)
	}
	p.screenshot("application")

	// A viewer is offered no deploy, and the deploy page is a 403.
	p.signIn(pf.tokens["viewer"])
	p.waitJS("the viewer's overview", `!!document.querySelector("#dev-h")`)
	p.open("#/applications")
	p.waitJS("the viewer's applications", `document.querySelectorAll("table.apps tbody tr a").length === 1`)
	if n := p.count(`a[href="#/deploy"]`); n != 0 {
		t.Errorf("the viewer is offered deploy (%d links)", n)
	}
	p.open("#/applications/" + pf.ns + "/blinky")
	p.waitJS("the viewer's application page", `!!document.querySelector('section[aria-labelledby="app-h"]')`)
	if n := p.count(".actions button"); n != 0 {
		t.Errorf("the viewer is offered %d actions on the application", n)
	}
	p.open("#/deploy")
	p.waitJS("the viewer's 403", `!!document.querySelector('.problem[data-status="403"]')`)
	if got := p.text(".problem h2"); got != "403 Forbidden" {
		t.Errorf("viewer deploy: heading %q, want 403 Forbidden", got)
	}
	if n := p.count("form.deploy"); n != 0 {
		t.Error("the viewer is shown the deploy form")
	}
	p.screenshot("viewer-403")

	// A caller Kubernetes knows but grants nothing sees the API's 403.
	p.signIn(pf.tokens["nobody"])
	p.waitJS("the API's 403", `!!document.querySelector('.problem[data-status="403"][data-problem="forbidden"]')`)
	if detail := p.text(".problem .detail"); !strings.Contains(detail, "may not list devices") {
		t.Errorf("nobody's 403 says %q", detail)
	}

	// In a narrow window the device list still fits.
	p.signIn(pf.tokens["admin"])
	p.waitJS("the admin's overview", `!!document.querySelector("#dev-h")`)
	p.do("narrow the window", emulation.SetDeviceMetricsOverride(390, 844, 2, true))
	p.open("#/devices")
	p.waitJS("the narrow device list", fmt.Sprintf(`document.querySelectorAll(".vrow").length === %d`, devices))
	var overflow bool
	p.do("measure", chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow))
	if overflow {
		t.Error("the device list overflows a 390px window")
	}
	p.screenshot("devices-narrow")
}

package e2e

import (
	"fmt"

	"github.com/chromedp/chromedp"
)

func chromedpEval(expr string) chromedp.Action { return chromedp.Evaluate(expr, nil) }

// chromedpSetNamespace picks a namespace in the header, as a person types
// one and presses Enter.
func chromedpSetNamespace(ns string) chromedp.Action {
	return chromedp.Evaluate(fmt.Sprintf(`(() => { const i = document.querySelector("#ns"); i.value = %q; i.dispatchEvent(new Event("change")); })()`, ns), nil)
}

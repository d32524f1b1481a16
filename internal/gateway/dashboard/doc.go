// Package dashboard is the fleet dashboard: a web page the gateway serves
// at /ui/ on its HTTP listener, next to the REST API it is built on
// (package httpapi).
//
// The page is plain HTML, CSS and JavaScript modules embedded in the binary
// (static/), with no build step and no third-party code; it loads nothing
// from outside the gateway. It signs in with the bearer tokens the API
// accepts, keeps the token in the tab's session storage, asks
// GET /api/v1/self which operations the caller may call and offers only
// those, and shows the API's problem documents (401, 403, ...) for what
// they are. Views update live from the API's watches (server-sent events
// read with fetch), not by polling; only a device's metrics, which the API
// does not stream, are fetched every few seconds while its page is open.
// docs/dashboard.md describes the views.
//
// # Usage
//
//	api, _ := httpapi.New(opts)
//	srv := &http.Server{Handler: dashboard.Mount(api)}
//
// Mount serves the page under /ui/, redirects a browser's GET / there, and
// hands every other request to the API handler.
package dashboard

// Package appmgr is the device's application manager: it installs,
// starts, stops, updates and removes the WebAssembly applications of one
// device, keeps them in flash and reports every state change. It does not
// decide whether an application fits the device: the board profile does,
// before a request reaches the manager (see the device's admission), and
// the runtime enforces each application's limits; the manager refuses
// only what it cannot take whatever the device (a bad name, a module that
// does not match its digest, an older version, a full flash).
//
// # Slots and updates
//
// Every application has two module slots. A new version is written into
// the inactive slot and, when it is to run, started on trial while the
// previous version stays in its slot: only once it has started does it
// become the active version, and the old slot is erased. If it fails to
// start — a trap, an exceeded limit, a module the runtime refuses — its
// slot is erased and the previous version is restored (and restarted if it
// was meant to run); [Manager.Install] returns a *[StartError] carrying both
// the failure and the fallback, and the observer sees [EventFailed] then
// [EventFellBack]. A first install that fails to start keeps its module
// and reports the failure: there is nothing to fall back to.
//
// # On flash
//
// Keys in the device's [flash.Store]:
//
//	a:<name>  the application record (CBOR): active slot, slot on trial,
//	          desired run state (and whether it was stopped on request),
//	          and per slot version, sequence, SHA-256, size and limits
//	0:<name>  module bytes of slot 0
//	1:<name>  module bytes of slot 1
//	c:<name>  the application's configuration (CBOR)
//
// # Crash consistency
//
// Every change is one flash transaction, which the store applies entirely
// or not at all after a power cut:
//
//   - install or update with start: (1) the new module and the record
//     naming its slot "on trial"; (2) after the start, either the record
//     making it active with the old slot erased, or the record without it
//     with its slot erased — the caller's extra operations (the replay
//     mark) ride along with (2);
//   - install or update without start: module, record and old-slot erase
//     together;
//   - start, stop: the record with the new desired state;
//   - remove: record, both slots and configuration erased together.
//
// [Open] repairs what a cut between (1) and (2) leaves: a record with a slot
// on trial is rolled back to its active version (a first install is
// forgotten), module slots no record points at are erased, and the
// applications meant to run are started from their active slot after the
// module is checked against its SHA-256. So after a power loss at any
// write, each application is either entirely its old version or entirely
// its new one, and no slot is orphaned; the same artifact can be delivered
// again. The package tests cut power at every write step of every
// operation to check this.
//
// # Runtime and protocol
//
// The manager drives the WebAssembly runtime through the small [Runner]
// interface, which the device composition adapts. [Commands] executes the
// gateway's commands (Deploy, Update, Start, Stop, Remove, ConfigPush) on
// a Manager after an [ArtifactVerifier] — the security manager — has
// verified the artifact, and answers each with a protocol.AppStatus.
package appmgr

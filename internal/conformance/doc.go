// Package conformance is an independent, black-box conformance suite for the
// Switchyard device protocol, version 1.
//
// It is written only from the contract text, PROTOCOL.md ("Switchyard device
// protocol, version 1 — the contract"), and deliberately imports nothing from
// this repository: the frame encoder and decoder, the MessagePack maps and the
// authentication tokens are re-implemented here with encoding/binary,
// crypto/hmac and github.com/vmihailenco/msgpack/v5. A second implementation of
// the wire format is what lets the suite catch places where the gateway and
// the text disagree; sharing the gateway's codec would hide exactly those.
//
// The package contains only tests. TestMain builds ./cmd/switchyard once into
// a temporary directory (a build failure fails the run, it never skips); each
// test or group of tests then starts its own gateway process on free loopback
// ports, waits for its /readyz, talks to it over real TCP and kills it in
// t.Cleanup. With no backend configured the gateway runs the embedded echo
// backend described at the end of the contract, which the data, resume and
// drain tests rely on.
//
// Every test that talks to a gateway runs twice, as the subtests "embedded"
// and "cluster" of its top-level test (cluster_test.go): in cluster mode
// the suite also starts two echo shards (`switchyard backend --app echo`),
// joins the gateway to them by gossip with a shared cluster key file, and
// waits until the gateway's ring holds both shards and devices get WELCOME;
// the sessions then live on the remote shards. `-run '/cluster'` selects
// one mode. A case that cannot apply to a mode, or where the clustered
// gateway departs from the contract ("KNOWN GAP:"), skips only that mode.
//
// Tests that wait out multi-second timeouts (handshake timeout, idle close,
// drain) are skipped under -short. Waiting on state is done by polling with a
// deadline; sleeps appear only where the test must let a timeout expire.
//
// Goroutines: every goroutine a test starts is joined before the test returns,
// and TestMain checks for leaks with goleak.
package conformance

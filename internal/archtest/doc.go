// Package archtest holds the test that keeps the import rules of
// docs/architecture.md true: imports point one way, protocol sits at the
// bottom, router and cluster never import each other.
package archtest

// Package rooms is a chat example backend built on topics: a device
// joins a room by subscribing its session to the room's topic, and what
// it says is published to the topic, so every gateway fans it out to its
// local members. Commands, one per message:
//
//	join <room>         subscribe; reply "joined <room>"
//	leave <room>        unsubscribe; reply "left <room>"
//	say <room> <text>   publish "<device>: <text>" to the room
//
// Replies are reliable; a bad command gets a best-effort "error: ...".
// Membership lives in the session's subscriptions, which follow it to
// other gateways and shards.
package rooms

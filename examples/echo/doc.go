// Package echo is the smallest backend: a Handler that sends every
// message back to its device with the same reliability. It keeps no
// state, so sessions move between shards without a Snapshotter.
//
//	srv, _ := backend.New(backend.Config{Shard: "echo-1", ClusterKeys: keys, Handler: echo.Handler{}})
//	srv.Start(ctx)
package echo

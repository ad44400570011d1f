package backend

import (
	"context"
	"errors"
	"sync"
)

// Close shuts the server down; it is idempotent and returns the first
// call's result.
//
//  1. stop accepting links and announce the shard as left;
//  2. stop every link: each writer flushes what is queued, then closes;
//     the readers exit and their sessions are detached;
//  3. end every session (OnClose "server closed") and let the workers
//     drain the mailboxes;
//  4. when ctx ends first: close the links at once and drop the mail
//     left (a handler call in progress still finishes);
//  5. wait for every goroutine the server started.
func (srv *Server) Close(ctx context.Context) error {
	srv.closeOnce.Do(func() { srv.closeErr = srv.shutdown(ctx) })
	return srv.closeErr
}

func (srv *Server) shutdown(ctx context.Context) error {
	srv.serving.Store(false)
	srv.gmu.Lock()
	srv.stopping = true
	ln, adm := srv.ln, srv.admin
	srv.gmu.Unlock()
	srv.mu.Lock()
	srv.closed = true
	links := make([]*link, 0, len(srv.links))
	for l := range srv.links {
		links = append(links, l)
	}
	srv.mu.Unlock()
	var errs []error
	if ln != nil {
		ln.Close()
		errs = append(errs, srv.announce(ctx, StateLeft))
	}
	close(srv.quit)
	for _, l := range links {
		l.shutdown()
	}
	if !waitFor(ctx, &srv.linkWG) {
		for _, l := range links {
			l.close(ctx.Err())
		}
		errs = append(errs, ctx.Err())
	}
	srv.linkWG.Wait()
	srv.endSessions()
	srv.runq.close(false)
	if !waitFor(ctx, &srv.workWG) {
		srv.runq.close(true)
		errs = append(errs, ctx.Err())
	}
	srv.workWG.Wait()
	if adm != nil {
		// Last: /metrics and /readyz answer through the drain and close.
		_ = adm.Shutdown(ctx)
		adm.Close()
	}
	srv.mainWG.Wait()
	srv.log.Info("backend closed")
	return errors.Join(errs...)
}

// endSessions queues OnClose for every session and empties the table.
func (srv *Server) endSessions() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, s := range srv.byID {
		srv.removeLocked(s, "server closed", false)
	}
}

// waitFor waits for wg until ctx ends; false when ctx ended first.
func waitFor(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

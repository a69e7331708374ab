/** A call's deadline and cancellation, as one AbortSignal handed to the layers below. */
import type { ServerSurfaceCall } from '@grpc/grpc-js/build/src/server-call.js';
import { SightlineError } from '../../errors.js';

export function signalFor(call: ServerSurfaceCall): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const onCancel = () => ac.abort(new SightlineError('CANCELLED', 'the client cancelled the call'));
  call.once('cancelled', onCancel);
  let timer: NodeJS.Timeout | undefined;
  const d = call.getDeadline();
  const at = d instanceof Date ? d.getTime() : d;
  if (Number.isFinite(at)) {
    const abortDeadline = () =>
      ac.abort(new SightlineError('DEADLINE', 'the deadline passed before the work finished'));
    const ms = at - Date.now();
    if (ms <= 0) abortDeadline();
    else timer = setTimeout(abortDeadline, ms);
  }
  return {
    signal: ac.signal,
    dispose: () => {
      if (timer) clearTimeout(timer);
      call.removeListener('cancelled', onCancel);
    },
  };
}

/** Client streams whose first message says what the rest is (an upload's metadata, a profile's target). */
import { SightlineError } from '../../errors.js';

/**
 * Splits a client stream into its first message's header and an iterable of the following messages'
 * bodies. The header must be in the first message and only there; `what` names both in errors.
 */
export async function splitHeadStream<M, H, B>(
  stream: AsyncIterable<M>,
  headOf: (m: M) => H | undefined,
  bodyOf: (m: M) => B,
  what: { message: string; head: string },
): Promise<{ head: H; rest: AsyncIterable<B> }> {
  const it = stream[Symbol.asyncIterator]();
  const first = await it.next();
  const head = first.done ? undefined : headOf(first.value);
  if (head === undefined)
    throw new SightlineError('INVALID_INPUT', `the first ${what.message} must carry the ${what.head}`);
  const rest: AsyncIterable<B> = {
    [Symbol.asyncIterator]: () => ({
      async next(): Promise<IteratorResult<B>> {
        const n = await it.next();
        if (n.done) return { done: true, value: undefined };
        if (headOf(n.value) !== undefined)
          throw new SightlineError('INVALID_INPUT', `only the first ${what.message} may carry the ${what.head}`);
        return { done: false, value: bodyOf(n.value) };
      },
    }),
  };
  return { head, rest };
}

/** Polling for a condition in tests, with a deadline that fails the test instead of hanging it. */

/**
 * Calls `probe` until it returns something other than undefined, null or false (a throw counts as
 * "not yet"), and resolves with that value and the time it took; rejects after `ms`, naming `what`.
 */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  ms: number,
  what: string,
  intervalMs = 20,
): Promise<{ value: Exclude<T, undefined | null | false>; ms: number }> {
  const t0 = Date.now();
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== null && v !== false)
        return { value: v as Exclude<T, undefined | null | false>, ms: Date.now() - t0 };
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() - t0 > ms)
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`,
      );
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

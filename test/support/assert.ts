/** Assertions on gRPC errors. */
import { status, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';

/** The promise rejects with this gRPC status and a message matching `pattern`. */
export async function rejectsWith(p: Promise<unknown>, code: status, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: ServiceError) => {
    assert.equal(e.code, code, `expected ${status[code]}, got ${status[e.code]}: ${e.details}`);
    assert.match(e.details, pattern);
    return true;
  });
}

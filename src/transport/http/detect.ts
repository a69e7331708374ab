/**
 * POST /v1/detect?model=NAME: the image as the request body (any content type) or as the first file of
 * a multipart/form-data body; the answer is sightline.v1.DetectResponse as JSON (every field, as
 * `sightline detect --json` prints it), or with ?annotate=1 the image itself with the boxes drawn (JPEG, PNG or WebP as sent;
 * other formats come back as JPEG).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { SightlineError } from '../../errors.js';
import { annotateToBuffer, sniffFormat, type AnnotatedFormat } from '../../inference/index.js';
import type { DetectService } from '../../serving/index.js';
import type { Metrics } from '../../telemetry/metrics.js';
import { toDetectJson } from '../grpc/convert.js';
import { observeImage } from '../image-metrics.js';
import { detectParams, type Params } from '../oip/index.js';
import { parseVersion } from '../version.js';

export interface DetectRouteDeps {
  detect: DetectService;
  metrics: Metrics;
  maxBodyBytes: number;
  signalOf: (req: FastifyRequest) => AbortSignal;
}

const ANNOTATED: readonly string[] = ['jpeg', 'png', 'webp'] satisfies AnnotatedFormat[];

/** The image: the body, or the first file of a multipart form (a form without one is refused). */
async function imageOf(req: FastifyRequest): Promise<Buffer> {
  if (!req.isMultipart()) return Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const file = await req.file();
  if (!file)
    throw new SightlineError(
      'INVALID_INPUT',
      'the multipart form holds no file: send the image as a file field (curl -F image=@bus.jpg)',
      { field: 'image' },
    );
  return file.toBuffer();
}

/** The client's own x-request-id, when the server kept it as the request's id (server.ts genReqId). */
export function clientRequestId(req: FastifyRequest): string | undefined {
  const id = req.headers['x-request-id'];
  return typeof id === 'string' && id === req.id ? id : undefined;
}

export function detectRoute(app: FastifyInstance, deps: DetectRouteDeps): void {
  const handler = async (req: FastifyRequest, reply: FastifyReply) => {
    const q = req.query as Record<string, string | undefined>;
    const image = await imageOf(req);
    const t0 = performance.now();
    const r = await deps.detect.detect(
      // A canary's split hashes the client's own x-request-id (its retries keep it), else the image.
      {
        model: q.model ?? '',
        version: parseVersion(q.model ?? '', q.version ?? ''),
        image,
        ...detectParams(q as Params),
        frameId: 0n,
        routingKey: clientRequestId(req),
      },
      deps.signalOf(req),
    );
    observeImage(deps.metrics, 'Detect', r, (performance.now() - t0) / 1000, 'http');
    reply
      .header('x-sightline-model', r.model)
      .header('x-sightline-model-version', String(r.version))
      .header('x-sightline-detections', String(r.detections.length));
    if (q.annotate !== '1' && q.annotate !== 'true') return reply.type('application/json').send(toDetectJson(r));
    const sent = sniffFormat(image);
    const format = (sent && ANNOTATED.includes(sent) ? sent : 'jpeg') as AnnotatedFormat;
    return reply.type(`image/${format}`).send(await annotateToBuffer(image, r.detections, format));
  };
  void app.register(async (scope) => {
    // The body is the image, whatever its content type; multipart forms go through @fastify/multipart.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    await scope.register(multipart, {
      limits: { fileSize: deps.maxBodyBytes, files: 1, fields: 16 },
      throwFileSizeLimit: true,
    });
    scope.post('/v1/detect', handler);
  });
}

/** `sightline detect`: send images to a running server and print (or draw) what it found. */
import { status } from '@grpc/grpc-js';
import { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { annotate } from '../../inference/index.js';
import { assertReadableFile, fractionArg, intArg, intListArg } from '../args.js';
import { connectionOptions, detect, detectorClient, type ConnectionFlags } from '../client.js';
import { describeError, reportError } from '../errors.js';

interface DetectFlags extends ConnectionFlags {
  image: string[];
  model: string;
  version: string;
  conf?: number;
  iou?: number;
  maxDet?: number;
  classes?: number[];
  agnostic?: boolean;
  annotate?: string;
  json?: boolean;
  timeout: number;
}

const fmt = (n: number) => n.toFixed(1).padStart(7);

/** `--image -`: the image on standard input (kubectl exec -i POD -- sightline detect --image - < photo.jpg). */
async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export function detectCommand(): Command {
  return connectionOptions(
    new Command('detect')
      .description('detect objects in images with a running server')
      .requiredOption(
        '--image <files...>',
        'image files (JPEG, PNG, WebP, GIF, TIFF, AVIF); - reads one from standard input',
      ),
  )
    .option('--model <name>', 'model name (default: the server default)', '')
    .option('--version <v>', 'model version (default: active)', '')
    .option('--conf <x>', 'confidence threshold (default 0.25)', fractionArg)
    .option('--iou <x>', 'NMS IoU threshold (default 0.45)', fractionArg)
    .option('--max-det <n>', 'maximum detections (default 300)', intArg)
    .option('--classes <ids>', 'comma-separated class ids to keep', intListArg)
    .option('--agnostic', 'class-agnostic NMS')
    .option('--annotate <out>', 'write the image with boxes drawn (several images: OUT-<n>.ext)')
    .option('--json', 'print JSON lines instead of a table')
    .option('--timeout <ms>', 'deadline per call in ms', intArg, 30_000)
    .action(async (f: DetectFlags) => {
      for (const file of f.image) if (file !== '-') assertReadableFile('--image', file);
      const client = detectorClient(f.server, f);
      let failures = 0;
      try {
        for (const [i, file] of f.image.entries()) {
          const image = file === '-' ? await readStdin() : await readFile(file);
          try {
            const r = await detect(
              client,
              {
                image,
                model: f.model,
                version: f.version,
                confidenceThreshold: f.conf ?? 0,
                iouThreshold: f.iou ?? 0,
                maxDetections: f.maxDet ?? 0,
                classes: f.classes ?? [],
                agnosticNms: !!f.agnostic,
              },
              { deadlineMs: f.timeout },
            );
            if (f.json) {
              process.stdout.write(JSON.stringify({ image: file, ...r, frameId: r.frameId.toString() }) + '\n');
            } else {
              const t = r.timing!;
              console.log(
                `${file}: ${r.imageWidth}x${r.imageHeight}, model ${r.model} v${r.version}, ` +
                  `${r.detections.length} detections, ${t.totalMs.toFixed(1)} ms (decode ` +
                  `${t.decodeMs.toFixed(1)}, preprocess ${t.preprocessMs.toFixed(1)}, ` +
                  `queue ${t.queueMs.toFixed(1)}, inference ${t.inferenceMs.toFixed(1)}, ` +
                  `postprocess ${t.postprocessMs.toFixed(1)})`,
              );
              if (r.detections.length) console.log('  label            conf     x_min   y_min   x_max   y_max');
              for (const d of r.detections)
                console.log(
                  `  ${d.label.padEnd(15).slice(0, 15)} ${d.confidence.toFixed(3)} ${fmt(d.xMin)} ${fmt(d.yMin)} ${fmt(d.xMax)} ${fmt(d.yMax)}`,
                );
            }
            if (f.annotate) {
              const out =
                f.image.length === 1
                  ? f.annotate
                  : f.annotate.replace(new RegExp(`${extname(f.annotate)}$`), `-${i}${extname(f.annotate)}`);
              await annotate(image, r.detections, out);
              if (!f.json) console.log(`  annotated image written to ${out}`);
            }
          } catch (e) {
            // Only a refused image is about this image; anything else (no server, no model, no
            // permission) would be the same for every image: report it once and stop.
            if ((e as { code?: unknown }).code !== status.INVALID_ARGUMENT) throw e;
            failures++;
            console.error(`${file}: ${describeError(e)}`);
          }
        }
        if (failures) process.exitCode = 1;
      } catch (e) {
        reportError(e, f.server);
      } finally {
        client.close();
      }
    });
}

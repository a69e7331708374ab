/** `sightline validate`: COCO-style mAP of a model file over a YOLO-format dataset, with a progress bar. */
import { SingleBar, Presets } from 'cli-progress';
import { Command, Option } from 'commander';
import { FAMILY_NAMES } from '../../identifiers.js';
import { validateModel } from '../../eval/validate.js';
import { assertReadableDir, assertReadableFile, fractionArg, intArg } from '../args.js';

interface ValidateFlags {
  model: string;
  dataset: string;
  labels?: string;
  family?: (typeof FAMILY_NAMES)[number];
  conf: number;
  iou: number;
  maxDet: number;
  workers: number;
  threads: number;
  limit?: number;
  json?: boolean;
  icc?: boolean;
  decoder: 'auto' | 'sharp';
  dctScaling: boolean;
}

export function validateCommand(): Command {
  return new Command('validate')
    .description(
      'score a model on a YOLO-format dataset: COCO mAP@0.5 and mAP@0.5:0.95 (101-point), Ultralytics val defaults',
    )
    .requiredOption('--model <file>', 'ONNX model file')
    .requiredOption('--dataset <dir>', 'dataset folder with images/ and labels/ (YOLO txt)')
    .option('--labels <file>', 'class names file (default: model metadata)')
    .addOption(new Option('--family <family>', 'output layout, instead of detecting it').choices([...FAMILY_NAMES]))
    .option('--conf <x>', 'confidence threshold', fractionArg, 0.001)
    .option('--iou <x>', 'NMS IoU threshold', fractionArg, 0.7)
    .option('--max-det <n>', 'boxes kept per image', intArg, 300)
    .option('--workers <n>', 'inference worker threads', intArg, 2)
    .option('--threads <n>', 'intra-op threads per worker', intArg, 1)
    .option('--limit <n>', 'only the first N images', intArg)
    .option(
      '--icc',
      'convert images with an embedded ICC profile to sRGB (as preprocess.applyIccProfile: true; default: ignore profiles, as OpenCV does)',
    )
    .addOption(
      new Option(
        '--decoder <decoder>',
        'auto: libjpeg-turbo for JPEGs, sharp for the rest; sharp: sharp for every image (to compare)',
      )
        .choices(['auto', 'sharp'])
        .default('auto'),
    )
    .option(
      '--no-dct-scaling',
      'decode every JPEG at full size (as preprocess.jpegDctScaling: false; ' +
        'default: 1/2, 1/4 or 1/8 in the IDCT where the input is that small)',
    )
    .option('--json', 'print the report as JSON')
    .action(async (f: ValidateFlags) => {
      assertReadableFile('--model', f.model);
      assertReadableDir('--dataset', f.dataset);
      if (f.labels) assertReadableFile('--labels', f.labels);
      const bar =
        process.stderr.isTTY && !f.json
          ? new SingleBar(
              { format: 'validate [{bar}] {value}/{total} images | {eta}s left', hideCursor: true },
              Presets.shades_classic,
            )
          : null;
      let started = false;
      const r = await validateModel({
        modelPath: f.model,
        datasetDir: f.dataset,
        labelsPath: f.labels,
        family: f.family,
        confThreshold: f.conf,
        iouThreshold: f.iou,
        maxDetections: f.maxDet,
        workers: f.workers,
        intraOpThreads: f.threads,
        limit: f.limit,
        applyIccProfile: f.icc ?? false,
        decoder: f.decoder,
        jpegDctScaling: f.dctScaling,
        onProgress: (done, total) => {
          if (bar && !started) {
            bar.start(total, 0);
            started = true;
          }
          if (bar) bar.update(done);
          else if (!f.json && (done % 16 === 0 || done === total))
            process.stderr.write(`validate: ${done}/${total} images\n`);
        },
      });
      bar?.stop();
      if (f.json) {
        process.stdout.write(JSON.stringify(r, null, 2) + '\n');
        return;
      }
      const m = r.metrics;
      console.log(
        `model ${r.model.path} (${r.model.family}, ${r.model.input}, ${r.model.provider}, sha256 ${r.model.sha256.slice(0, 12)})`,
      );
      console.log(`dataset ${f.dataset}: ${r.images} images, ${m.numGt} boxes, ${m.perClass.length} classes present`);
      console.log(
        `settings: conf ${r.settings.confThreshold}, NMS IoU ${r.settings.iouThreshold}, ` +
          `max ${r.settings.maxDetections} boxes, multi-label, ICC profiles ` +
          `${r.settings.applyIccProfile ? 'applied' : 'ignored'}, decoder ${r.settings.decoder}, ` +
          `JPEG DCT scaling ${r.settings.jpegDctScaling ? 'on' : 'off'}`,
      );
      console.log(`mAP@0.5      ${m.map50.toFixed(3)}`);
      console.log(`mAP@0.5:0.95 ${m.map5095.toFixed(3)}`);
      console.log(`precision ${m.precision.toFixed(3)}  recall ${m.recall.toFixed(3)} (conf 0.25, IoU 0.5)`);
      console.log(
        `${r.seconds.toFixed(1)} s (${((r.seconds * 1000) / r.images).toFixed(0)} ` +
          `ms/image); per image, waiting excluded: p50 ${r.latency.p50Ms.toFixed(1)} ` +
          `ms, p99 ${r.latency.p99Ms.toFixed(1)} ms`,
      );
    });
}

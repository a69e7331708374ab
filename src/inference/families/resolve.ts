/**
 * Picks the family for a model from its output shapes (and metadata), and its class names. Runs once
 * at model load, so a model no family can decode is refused there, not at its first request.
 */
import { SightlineError } from '../../errors.js';
import { FAMILY_NAMES } from '../../identifiers.js';
import type { FamilyName, ModelMeta, TensorInfo } from '../types.js';
import type { CheckedFamily } from './common.js';
import type { Family } from './family.js';
import { parseLabelsFile, parseUltralyticsNames } from './names.js';
import { createUltralyticsFamily } from './ultralytics.js';
import { createYolov5Family } from './yolov5.js';
import { createYoloxFamily } from './yolox.js';

const FACTORIES: Readonly<Record<FamilyName, () => CheckedFamily>> = {
  ultralytics: createUltralyticsFamily,
  yolov5: createYolov5Family,
  yolox: createYoloxFamily,
};

const SUPPORTED =
  'supported layouts: ultralytics (YOLOv8/YOLO11) one output [1, 4+C, N] with 4+C < N; ' +
  'yolov5 one output [1, 3×G, 5+C]; yolox one output [1, G, 5+C]; ' +
  'G = grid cells of the input at strides 8/16/32';

export const describeOutputs = (outputs: readonly TensorInfo[]): string =>
  outputs.length === 0 ? '(no outputs)' : outputs.map((o) => `${o.name} [${o.dims.join(', ')}]`).join(', ');

/**
 * A new family instance (each owns its decode buffers, so give each loaded model its own; the
 * Candidates a decode() returns are views that the instance's next decode() overwrites).
 * `override` forces a family but still refuses shapes it cannot decode; otherwise the first family
 * whose matches() holds wins. Throws UNSUPPORTED_MODEL naming every output when none fits.
 */
export function resolveFamily(outputs: readonly TensorInfo[], meta: ModelMeta, override?: FamilyName): Family {
  const fields = {
    outputs: outputs.map((o) => ({ name: o.name, dims: [...o.dims] })),
    inputWidth: meta.inputWidth,
    inputHeight: meta.inputHeight,
  };
  if (override !== undefined) {
    const make = Object.hasOwn(FACTORIES, override) ? FACTORIES[override] : undefined;
    if (make === undefined) {
      throw new SightlineError('UNSUPPORTED_MODEL', `unknown model family '${String(override)}'; ${SUPPORTED}`, fields);
    }
    const family = make();
    const problem = family.problem(outputs, meta, true);
    if (problem !== null) {
      throw new SightlineError(
        'UNSUPPORTED_MODEL',
        `model outputs ${describeOutputs(outputs)} cannot be decoded as family '${override}': ${problem}`,
        { ...fields, family: override },
      );
    }
    return family;
  }
  const reasons: string[] = [];
  // The layouts are disjoint, so the order only fixes which reason comes first.
  for (const name of FAMILY_NAMES) {
    const family = FACTORIES[name]();
    const problem = family.problem(outputs, meta, false);
    if (problem === null) return family;
    reasons.push(`${name}: ${problem}`);
  }
  throw new SightlineError(
    'UNSUPPORTED_MODEL',
    `no supported detection layout matches model outputs ${describeOutputs(outputs)} ` +
      `(input ${meta.inputWidth}x${meta.inputHeight}); ${SUPPORTED}. Not matched: ${reasons.join('; ')}`,
    fields,
  );
}

/**
 * Class names for a model: a labels file wins over the metadata `names`; with neither, `class_<i>`.
 * A count that differs from the model's class count is refused: it would mislabel every detection.
 */
export function resolveNames(
  props: Readonly<Record<string, string>>,
  numClasses: number,
  labelsFileText?: string,
): string[] {
  if (labelsFileText !== undefined) {
    const names = parseLabelsFile(labelsFileText);
    if (names.length !== numClasses) {
      throw new SightlineError(
        'INVALID_INPUT',
        `labels file has ${names.length} names but the model outputs ${numClasses} classes`,
        { names: names.length, numClasses },
      );
    }
    return names;
  }
  const raw = Object.hasOwn(props, 'names') ? props.names : undefined;
  if (raw !== undefined) {
    const names = parseUltralyticsNames(raw);
    if (names === null) {
      throw new SightlineError(
        'UNSUPPORTED_MODEL',
        `model metadata 'names' is not a dict or list literal of class names; give a labels file instead`,
        { names: raw.slice(0, 200) },
      );
    }
    if (names.length !== numClasses) {
      throw new SightlineError(
        'UNSUPPORTED_MODEL',
        `model metadata lists ${names.length} class names but the model outputs ${numClasses} classes; give a labels file`,
        { names: names.length, numClasses },
      );
    }
    return names;
  }
  return Array.from({ length: numClasses }, (_, i) => `class_${i}`);
}

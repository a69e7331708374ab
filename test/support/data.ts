/** Per suite: whether ../shared is there (see sharedPresent: under CI=true a missing folder fails the run). */
import { sharedPresent } from './shared.js';

export const sharedDataOrSkip = (suite: string): boolean => sharedPresent(suite);

import { describe, expect, it } from 'vitest';
import { PROBLEM_STATUS } from '../../src/http/problem.js';
import { readmeErrorCodes } from '../support/readme.js';

describe("the README's error table", () => {
  it('lists every code the API answers with, at the status it is answered with, and nothing else', () => {
    expect(Object.fromEntries(readmeErrorCodes())).toEqual(PROBLEM_STATUS);
  });
});

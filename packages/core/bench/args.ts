/** A bench script's command line: `--name value` options and `--name` flags. */

/** Whether `--name` was given. */
export const flag = (name: string): boolean => process.argv.includes(`--${name}`)

/** The value after `--name`, or `fallback` when it was not given. */
export const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
}

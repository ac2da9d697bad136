import { defineNode } from '../../define.js';

export const SaveImage = defineNode({
  type: 'SaveImage',
  title: 'Save Image',
  category: 'image',
  description:
    'Writes each image as PNG (<prefix>_NNNNN.png) with the graph, resolved params and model hashes embedded, so the ' +
    'PNG can be dropped back into the editor or given to `fusegraph run`.',
  inputs: { image: { type: 'IMAGE', description: 'Images to save.' } },
  outputs: {},
  params: { prefix: {
      kind: 'string', default: 'fusegraph', maxLength: 100, pattern: '^[A-Za-z0-9_-][A-Za-z0-9_.-]*$',
      description: 'File name prefix (letters, digits, _ . -).',
    } },
  output: true,
});
